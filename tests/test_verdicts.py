"""Verdicts a reviewer would sign (issue 15): wiring-aware faithfulness, a separate mean pool,
per-prompt values that recompute every reported number."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import circuitspec as cs

CLI = [sys.executable, "-m", "circuitspec.cli"]

HYPOTHESIS = """name: wiring
model: {model}
task: {{kind: ioi, n_prompts: 24, seed: 0, corruption: abc}}
nodes:
  l0: {{role: other, heads: [L0H0, L0H1, L0H2, L0H3]}}
  l1: {{role: other, heads: [L1H0, L1H1, L1H2, L1H3]}}
  l2: {{role: name_mover, heads: [L2H0, L2H1, L2H2, L2H3]}}
edges:
{edges}
claims:
  faithfulness: {{min: 0.9}}
  edges: {{min_effect: 0.0, sign: any}}
"""
# Every head of the tiny model is in the circuit, so node-level faithfulness is exactly 1
# whatever the edges. The complete graph among the groups is the model itself at edge level
# too (F = F(M)); a sparse wiring of the same heads is not.
RIGHT = [f"  - {{from: {a}, to: {b}, via: {v}, at: END}}"
         for a, b in (("l0", "l1"), ("l0", "l2"), ("l1", "l2")) for v in "qkv"]
RIGHT += [f"  - {{from: {a}, to: logits, at: END}}" for a in ("l0", "l1", "l2")]
WRONG = ["  - {from: l0, to: l1, via: q, at: END}", "  - {from: l1, to: l2, via: q, at: END}",
         "  - {from: l2, to: logits, at: END}"]
QUICK = {"n_random": 0, "n_null_edges": 0, "n_bootstrap": 300, "robustness": False, "per_head": False}


def _write(path: Path, model_dir: Path, edges: list[str]) -> Path:
    path.write_text(HYPOTHESIS.format(model=model_dir, edges="\n".join(edges)))
    return path


def _claim_failed(data: dict, name: str) -> bool:
    score = data["circuit"][name]
    return score["verdict"] is not None and score["verdict"] != "verified"


def test_faithfulness_is_judged_at_edge_level_when_edges_join_groups(tmp_path, tiny_model_dirs):
    model_dir = tiny_model_dirs["llama"]
    right = cs.verify(_write(tmp_path / "right.yaml", model_dir, RIGHT), **QUICK)
    assert right.settings.ablation_level == "edge"
    edge = right.circuit.faithfulness_edge_level
    assert edge.value == pytest.approx(1.0, abs=1e-5) and edge.verdict == "verified"
    assert right.circuit.faithfulness.verdict is None  # node level reported beside it
    assert "judged at edge level" in right.circuit.faithfulness.reason

    wrong_path = _write(tmp_path / "wrong.yaml", model_dir, WRONG)
    wrong = cs.verify(wrong_path, **QUICK)
    # Same heads: node level cannot see the wiring and is unchanged...
    assert wrong.circuit.faithfulness.value == pytest.approx(right.circuit.faithfulness.value, abs=1e-9)
    # ...edge level can, and the claim no longer holds.
    assert abs(wrong.circuit.faithfulness_edge_level.value - 1.0) > 0.5
    assert wrong.circuit.faithfulness_edge_level.verdict != "verified"
    assert "claim faithfulness_edge_level" in [f.what for f in wrong.failures()]
    assert not wrong.passed

    run = subprocess.run([*CLI, "verify", str(wrong_path), "--json", "--n-random", "0",
                          "--n-null-edges", "0", "--n-bootstrap", "300", "--no-robustness"],
                         capture_output=True, text=True)
    assert run.returncode == 1, run.stderr
    data = json.loads(run.stdout)
    assert data["settings"]["ablation_level"] == "edge"
    assert _claim_failed(data, "faithfulness_edge_level") and not data["passed"]
    # Node level stays selectable, and there the same file's faithfulness claim holds.
    node = cs.verify(wrong_path, ablation_level="node", **QUICK)
    assert node.settings.ablation_level == "node"
    assert node.circuit.faithfulness.verdict == "verified"
    assert node.circuit.faithfulness_edge_level.verdict is None


def test_logits_only_hypothesis_is_judged_at_node_level(tmp_path, tiny_model_dirs):
    edges = [f"  - {{from: {a}, to: logits, at: END}}" for a in ("l0", "l1", "l2")]
    hyp = cs.load_hypothesis(_write(tmp_path / "h.yaml", tiny_model_dirs["llama"], edges))
    assert hyp.judged_level() == "node"  # no edge between groups: no wiring to test
    explicit = hyp.model_copy(update={"ablation_level": "edge"})
    assert explicit.judged_level() == "edge"
