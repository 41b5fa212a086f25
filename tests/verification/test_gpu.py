"""``--device cuda``: every stage of verify on the GPU gives the CPU's numbers.

Runs only where CUDA is present (skipped otherwise). One tiny Llama-style checkpoint (grouped
keys and values, rotary) verified twice, on the CPU and on the GPU, with every stage on:
edges with per-head rows and their nulls (the fast engine), faithfulness at both levels,
completeness, minimality, both circuit nulls (the ablation runner, its prefix tree, the mean
pool, edge-level evaluation) and the robustness panel (all three ablations, both semantics).
"""

from __future__ import annotations

import pytest
import torch

import circuitspec as cs

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

SMALL = {"n_bootstrap": 200, "n_random": 10, "n_random_edge": 2, "n_subsets": 3, "greedy_steps": 1,
         "n_null_edges": 100}


def _hypothesis(tmp_path, model_dir):
    hyp = tmp_path / "h.yaml"
    hyp.write_text(f"""name: tiny-gpu
model: {model_dir}
task: {{kind: ioi, n_prompts: 8, seed: 0, corruption: abc}}
nodes:
  late: {{role: name_mover, heads: [L2H0, L2H1]}}
  early: {{role: induction, heads: [L0H1, L1H2]}}
edges:
  - {{from: late, to: logits, at: END}}
  - {{from: early, to: late, via: q, at: END}}
  - {{from: early, to: late, via: k, at: S2}}
claims:
  faithfulness: {{min: 0.5}}
""")
    return hyp


def _numbers(result) -> dict[str, float]:
    out = {f"edge {e.name}": e.effect for e in result.edges}
    out |= {f"null {e.name}": e.null.mean for e in result.edges if e.null is not None}
    c = result.circuit
    for name in ("faithfulness", "completeness", "minimality", "faithfulness_edge_level"):
        out[name] = getattr(c, name).value
    out["null"], out["null edge level"] = c.null.mean, c.null_edge_level.mean
    for row in result.robustness:
        if row.faithfulness is not None:
            out[f"panel {row.setting}"] = row.faithfulness
        out |= {f"panel {row.setting} {k}": v for k, v in row.edge_effects.items() if v is not None}
    return out


def compare_devices(hyp, device: str) -> None:
    on_cpu = cs.verify(hyp, device="cpu", **SMALL)
    on_gpu = cs.verify(hyp, device=device, **SMALL)
    assert on_gpu.settings.engine == on_cpu.settings.engine == "fast"  # no fallback on the GPU
    cpu, gpu = _numbers(on_cpu), _numbers(on_gpu)
    assert cpu.keys() == gpu.keys()
    for key, value in cpu.items():
        assert gpu[key] == pytest.approx(value, abs=1e-4), key
    assert [e.verdict for e in on_gpu.edges] == [e.verdict for e in on_cpu.edges]


def test_every_stage_on_cuda_gives_the_cpu_numbers(tmp_path, tiny_model_dirs):
    compare_devices(_hypothesis(tmp_path, tiny_model_dirs["llama"]), "cuda")
