"""`circuitspec diff` on results.json files from real verify runs of tiny checkpoints."""

from __future__ import annotations

import json
import subprocess

import pytest
from helpers.checkpoints import save_silenced, write_late_hypothesis
from helpers.cli import CLI

import circuitspec as cs
from circuitspec.output.diff import diff_files

CHEAP = {"n_random": 0, "n_null_edges": 0, "n_bootstrap": 100, "robustness": False,
         "scores": False, "per_head": False}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """results.json of the late-heads hypothesis where it holds (A), where it fails (B),
    and A's model again with another seed (C)."""
    root = tmp_path_factory.mktemp("diff")
    works = save_silenced(root / "works", layers=(0, 1))   # late heads carry everything: effect -1
    broken = save_silenced(root / "broken", layers=(2,))   # late heads write nothing: effect 0
    out = {}
    for key, model, seed in (("a", works, 0), ("b", broken, 0), ("c", works, 1)):
        hyp = write_late_hypothesis(root / f"{key}.yaml", model)
        result = cs.verify(hyp, seed=seed, **CHEAP)
        out[key] = result.save(root / key / "results.json")
        out[key + "_result"] = result
    return out


def test_the_runs_are_what_the_construction_says(runs):
    a, b = runs["a_result"], runs["b_result"]
    assert a.edges[0].effect == pytest.approx(-1.0, abs=1e-5) and a.edges[0].verdict == "verified"
    assert b.edges[0].effect == pytest.approx(0.0, abs=1e-6) and b.edges[0].verdict == "refuted"


def test_diff_flags_the_flip_and_the_disjoint_intervals(runs):
    d = diff_files(runs["a"], runs["b"])
    assert d.worse
    kinds = {(c.kind, c.what) for c in d.changes}
    assert ("verdict", "edge late->logits@END") in kinds
    assert ("passed", "passed") in kinds
    assert ("interval", "edge late->logits@END") in kinds  # [-1, -1] against [0, 0]
    assert ("model", "model.reference") in kinds
    assert not any(c.kind == "settings" for c in d.changes)
    flip = next(c for c in d.changes if c.kind == "verdict")
    assert (flip.a, flip.b, flip.worse) == ("verified", "refuted", True)


def test_cli_exit_codes(runs, tmp_path):
    worse = subprocess.run(CLI + ["diff", str(runs["a"]), str(runs["b"])], capture_output=True, text=True)
    assert worse.returncode == 1, worse.stdout + worse.stderr
    assert "verified -> refuted" in worse.stdout and "WORSE" in worse.stdout
    better = subprocess.run(CLI + ["diff", str(runs["b"]), str(runs["a"].parent)], capture_output=True, text=True)
    assert better.returncode == 0, better.stdout + better.stderr
    assert "refuted -> verified" in better.stdout
    # Another seed on the same model: the verdict holds; only the task seed differs.
    same = subprocess.run(CLI + ["diff", str(runs["a"]), str(runs["c"]), "--json"], capture_output=True, text=True)
    assert same.returncode == 0, same.stderr
    changes = json.loads(same.stdout)["changes"]
    assert {c["what"] for c in changes} == {"task.seed", "settings.statistics"}  # the seed is in both


@pytest.mark.parametrize("content, needle", [
    (None, "cannot read file"),
    ("{not json", "not valid JSON"),
    ('{"name": "x", "model": "m"}', "not a circuitspec results.json"),
    ("[1, 2]", "not a circuitspec results.json"),
    ("BROKEN_VERDICT", "verdict must be one of"),
])
def test_bad_input_exits_2_naming_the_file(runs, tmp_path, content, needle):
    bad = tmp_path / "bad.json"
    if content == "BROKEN_VERDICT":
        data = json.loads(runs["a"].read_text())
        data["edges"][0]["verdict"] = "great"
        content = json.dumps(data)
    if content is not None:
        bad.write_text(content)
    proc = subprocess.run(CLI + ["diff", str(runs["a"]), str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert str(bad) in proc.stderr and needle in proc.stderr
    assert "Traceback" not in proc.stderr
