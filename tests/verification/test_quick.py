"""verify --quick: edges and faithfulness only, small nulls, and never a pass."""

from __future__ import annotations

import json
import subprocess

from helpers.cli import CLI
from helpers.hypotheses import TRUE_CLAIMS, TRUE_EDGES, WRONG_EDGES, write_hypothesis

import circuitspec as cs
from circuitspec.output.report import _summary
from circuitspec.verification.settings import QUICK_PROMPTS


def test_quick_checks_edges_and_faithfulness_and_cannot_pass(tmp_path, tiny_model_dirs):
    llama = tiny_model_dirs["llama"]
    good = write_hypothesis(tmp_path / "good.yaml", llama, edges=TRUE_EDGES, claims=TRUE_CLAIMS)
    out = tmp_path / "out"
    # The hypothesis is the whole model, so there is no null to draw: asking for none keeps the
    # edge and the faithfulness claim verifiable (without it they are inconclusive: no null to
    # be judged against).
    ok = subprocess.run(CLI + ["verify", str(good), "--quick", "--out", str(out), "--n-bootstrap", "200",
                               "--n-null-edges", "0", "--n-random", "0", "--n-random-edge", "0"],
                        capture_output=True, text=True)
    # Everything checked held, yet the exit status is 3, not 0: a quick check is no verification.
    assert ok.returncode == 3, ok.stdout + ok.stderr
    said = " ".join(ok.stdout.split())  # the console wraps lines
    assert "QUICK CHECK ONLY" in said and "not the full verification" in said
    data = json.loads((out / "results.json").read_text())
    assert data["mode"] == "quick" and data["passed"] is False
    assert data["edges"][0]["verdict"] == "verified"
    assert "not tested against a null" in data["edges"][0]["reason"]
    assert data["circuit"]["faithfulness"]["verdict"] == "verified"
    assert "asked for none (n_random=0)" in data["circuit"]["faithfulness"]["reason"]
    for name in ("completeness", "minimality"):
        assert data["circuit"][name]["value"] is None and "--quick" in data["circuit"][name]["reason"]
    assert "robustness" not in data and "null" not in data["circuit"]
    assert "QUICK CHECK, NOT A VERIFICATION" in (out / "report.md").read_text()

    bad = write_hypothesis(tmp_path / "bad.yaml", llama, edges=WRONG_EDGES, claims=TRUE_CLAIMS)
    failed = subprocess.run(CLI + ["verify", str(bad), "--quick", "--n-bootstrap", "200"],
                            capture_output=True, text=True)
    assert failed.returncode == 1, failed.stdout + failed.stderr


def test_quick_uses_a_small_edge_null(tmp_path, tiny_model_dirs):
    hyp = tmp_path / "h.yaml"
    hyp.write_text(f"""name: tiny
model: {tiny_model_dirs["llama"]}
task: {{kind: ioi, n_prompts: {QUICK_PROMPTS + 16}, seed: 0, corruption: abc}}
nodes:
  late: {{role: name_mover, heads: [L2H0, L2H1]}}
edges:
  - {{from: late, to: logits, at: END, expect: {{sign: any}}}}
claims:
  faithfulness: {{min: 0.1}}
""")
    result = cs.verify(hyp, quick=True, n_bootstrap=100)
    assert result.mode == "quick" and not result.passed
    null = result.edges[0].null
    assert null is not None and null.n == 20 and null.p_value is not None
    assert "edge_nulls" in result.work and "completeness" not in result.work
    assert cs.Result.from_json(result.to_json()).mode == "quick"
    # More prompts than a quick check takes: it verifies QUICK_PROMPTS of them and says so.
    assert result.task.n_prompts == QUICK_PROMPTS
    said = f"{QUICK_PROMPTS} of the file's {QUICK_PROMPTS + 16} prompts"
    assert result.settings.statistics["quick_prompts"] == said
    assert said in _summary(result)
