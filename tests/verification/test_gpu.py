"""``--device cuda``: every stage of verify on the GPU gives the CPU's numbers.

The comparison runs only where CUDA is present (skipped otherwise). One tiny Llama-style
checkpoint (grouped keys and values, rotary) verified twice, on the CPU and on the GPU, with
every stage on: edges with per-head rows and their nulls (the fast engine), faithfulness at
both levels, completeness, minimality, both circuit nulls (the ablation runner, its prefix
tree, the mean pool, edge-level evaluation) and the robustness panel (all three ablations,
both semantics); the CLI's results.json is compared the same way.

On a machine without a GPU, :func:`test_every_stage_follows_the_model_device` stands in for
it: torch's default device is set to ``meta`` once the model is loaded, so a tensor that a
stage makes without naming a device lands on ``meta``. Combined with the model's tensors it
raises; used as an index it reads garbage; either way the run fails or a number changes, as it
would on a GPU. (It cannot see a CPU index into a device tensor, which CUDA accepts, nor a
tensor made on the CPU on purpose with ``device="cpu"``.)
"""

from __future__ import annotations

import json
import sys

import pytest
import torch
from helpers.factories import save_tiny_model
from helpers.hypotheses import MIB_HYPOTHESIS

import circuitspec as cs
from circuitspec.bridge.loading import load_model
from circuitspec.cli import main

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

SMALL = {"n_bootstrap": 200, "n_random": 10, "n_random_edge": 2, "n_subsets": 3, "greedy_steps": 1,
         "n_null_edges": 100}


def _hypothesis(tmp_path, model_dir, name: str = "h.yaml"):
    hyp = tmp_path / name
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
    for name in ("faithfulness", "completeness", "minimality", "faithfulness_edge_level", "faithfulness_mib"):
        if getattr(c, name, None) is not None:
            out[name] = getattr(c, name).value
    if c.null is not None:
        out["null"] = c.null.mean
    if c.null_edge_level is not None:
        out["null edge level"] = c.null_edge_level.mean
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


@CUDA
def test_every_stage_on_cuda_gives_the_cpu_numbers(tmp_path, tiny_model_dirs):
    compare_devices(_hypothesis(tmp_path, tiny_model_dirs["llama"]), "cuda")


@CUDA
def test_mib_graph_on_cuda_gives_the_cpu_numbers(tmp_path, tiny_model_dirs):
    hyp = tmp_path / "mib.yaml"
    hyp.write_text(MIB_HYPOTHESIS.format(model=tiny_model_dirs["llama"], graph="graph: mib\n"))  # grouped keys: the ungrouped copy too
    on_cpu = cs.verify(hyp, device="cpu", quick=True, n_bootstrap=200, n_null_edges=0)
    on_gpu = cs.verify(hyp, device="cuda", quick=True, n_bootstrap=200, n_null_edges=0)
    assert on_gpu.circuit.faithfulness_mib is not None
    for key, values in on_cpu.circuit.faithfulness_mib.per_prompt.items():
        assert on_gpu.circuit.faithfulness_mib.per_prompt[key] == pytest.approx(values, abs=1e-4), key


def _results_json(hyp, device: str, out, monkeypatch) -> dict:
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in SMALL.items() if k not in ("n_subsets", "greedy_steps")]
    monkeypatch.setattr(sys, "argv", ["circuitspec", "verify", str(hyp), "--device", device, "--out", str(out),
                                      *flags])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code in (0, 1)  # passed or failed, not an error
    return json.loads((out / "results.json").read_text())


def _json_numbers(data: dict) -> dict[str, float]:
    out = {f"edge {e['from']}->{e['to']} {e.get('via')}": e["effect"] for e in data["edges"]}
    out |= {f"edge {e['from']}->{e['to']} {e.get('via')} null": e["null"]["mean"] for e in data["edges"]}
    for name, score in data["circuit"].items():
        if isinstance(score, dict) and isinstance(score.get("value"), float):
            out[f"circuit {name}"] = score["value"]
    out["metric clean"], out["metric corrupt"] = data["metric"]["clean"], data["metric"]["corrupt"]
    return out


@CUDA
def test_results_json_on_cuda_matches_the_cpu(tmp_path, tiny_model_dirs, monkeypatch):
    hyp = _hypothesis(tmp_path, tiny_model_dirs["llama"])
    cpu_json, gpu_json = (_results_json(hyp, d, tmp_path / d, monkeypatch) for d in ("cpu", "cuda"))
    assert (cpu_json["settings"]["device"], gpu_json["settings"]["device"]) == ("cpu", "cuda:0")
    cpu, gpu = _json_numbers(cpu_json), _json_numbers(gpu_json)
    assert cpu.keys() == gpu.keys() and len(cpu) >= 10
    for key, value in cpu.items():
        assert gpu[key] == pytest.approx(value, abs=1e-4), key


@pytest.mark.parametrize("family", ["llama", "gpt2", "neox", "gemma3"])
def test_every_stage_follows_the_model_device(tmp_path, family):
    """Every stage, with tensors made without a device landing on ``meta``: the same numbers."""
    folder = save_tiny_model(family, tmp_path / family)
    model = load_model(str(folder))
    hyp = _hypothesis(tmp_path, folder)
    cheap = SMALL | {"n_bootstrap": 100, "n_random": 3, "n_null_edges": 20}
    expected = _numbers(cs.verify(hyp, model, **cheap))
    with torch.device("meta"):
        got = _numbers(cs.verify(hyp, model, **cheap))
    assert expected.keys() == got.keys()
    assert got == expected


@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_mib_graph_follows_the_model_device(tmp_path, family):
    """MIB's graph (the ungrouped copy of a grouped-query model; Gemma's post-attention norm)."""
    folder = save_tiny_model(family, tmp_path / family)
    model = load_model(str(folder))
    hyp = tmp_path / "mib.yaml"
    hyp.write_text(MIB_HYPOTHESIS.format(model=folder, graph="graph: mib\n"))
    expected = cs.verify(hyp, model, quick=True, n_bootstrap=100, n_null_edges=0).circuit.faithfulness_mib
    with torch.device("meta"):
        got = cs.verify(hyp, model, quick=True, n_bootstrap=100, n_null_edges=0).circuit.faithfulness_mib
    assert expected is not None and got is not None
    assert got.per_prompt == expected.per_prompt


def test_the_exact_engine_follows_the_model_device(tmp_path, tiny_model_dirs):
    """``--engine reference`` (and the fast engine's fallback): edges, per-head rows, nulls, and
    both semantics in the panel."""
    model = load_model(str(tiny_model_dirs["llama"]))
    hyp = _hypothesis(tmp_path, tiny_model_dirs["llama"])
    cheap = {"engine": "reference", "scores": False, "n_null_edges": 5, "n_bootstrap": 100}
    expected = cs.verify(hyp, model, **cheap)
    with torch.device("meta"):
        got = cs.verify(hyp, model, **cheap)
    assert got.settings.engine == "reference"
    assert [(e.effect, e.null.mean) for e in got.edges] == [(e.effect, e.null.mean) for e in expected.edges]
    assert [r.edge_effects for r in got.robustness] == [r.edge_effects for r in expected.robustness]
