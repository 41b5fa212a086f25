"""Result dataclasses: JSON round trip, contract key names, failures(), atomic save."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
from helpers.sample_result import sample_result

from circuitspec.errors import ResultFileError
from circuitspec.output import atomic
from circuitspec.results import (
    CircuitScores,
    EdgeResult,
    NullDistribution,
    Result,
    Score,
)


def test_round_trip_through_json_text_is_equal():
    result = sample_result()
    again = Result.from_json(json.loads(result.dumps()))
    assert again == result
    assert again.to_json() == result.to_json()


def test_json_keys_follow_the_contract():
    d = sample_result().to_json()
    assert {"hypothesis", "model", "task", "metric", "edges", "circuit", "passed", "settings",
            "versions", "timings", "robustness"} <= d.keys()
    edge = d["edges"][1]
    assert {"from", "to", "via", "at", "metric_patched", "effect", "ci", "verdict", "reason",
            "expect", "per_head"} <= edge.keys()
    assert "sender" not in edge and edge["from"] == "s_inhibition" and edge["to"] == "name_movers"
    assert edge["ci"] == [-0.48, -0.35]
    assert edge["per_head"][0].keys() == {"head", "effect", "ci"}
    for k in ("faithfulness", "completeness", "minimality"):
        assert d["circuit"][k].keys() == {"value", "ci", "verdict", "reason", "details"}
    assert d["metric"].keys() == {"name", "clean", "corrupt", "clean_ci", "corrupt_ci"}
    assert d["model"].keys() == {"reference", "name", "revision", "n_layers", "n_heads", "n_kv_heads"}
    assert d["settings"].keys() == {"semantics", "ablation", "freeze_mlps", "engine", "n_bootstrap",
                                    "ablation_level", "ablation_scope", "mean_pool",
                                    "bootstrap_unit", "statistics", "edge_positions"}


def test_edge_level_faithfulness_and_null_p_value_round_trip():
    r = sample_result()
    edge = Score(0.61, (0.5, 0.7), None, "reported", {"mean_of_per_prompt_ratios": 0.6})
    null = NullDistribution(0.05, -0.02, 0.13, 100, real=0.87, fraction_beaten=1.0, p_value=1 / 101)
    circuit = CircuitScores(**{**r.circuit.__dict__, "faithfulness_edge_level": edge, "null": null,
                               "f_empty": 0.1})
    d = Result(**{**r.__dict__, "circuit": circuit}).to_json()
    assert d["circuit"]["faithfulness_edge_level"]["value"] == 0.61
    assert d["circuit"]["null"]["p_value"] == pytest.approx(1 / 101)
    back = Result.from_json(json.loads(json.dumps(d)))
    assert back.circuit == circuit
    assert list(back.circuit.scores()) == ["faithfulness", "faithfulness_edge_level", "completeness",
                                           "minimality"]
    old = json.loads(json.dumps(sample_result().to_json()))
    old["settings"].pop("ablation_level"), old["settings"].pop("ablation_scope")
    assert Result.from_json(old).settings.ablation_level == "node"  # files from before still load


def test_non_finite_numbers_become_null_and_json_stays_strict():
    r = sample_result()
    bad = EdgeResult("a", "b", "q", "END", float("nan"), float("inf"), (float("-inf"), 1.0),
                     "inconclusive")
    text = Result(**{**r.__dict__, "edges": (bad,)}).dumps()  # allow_nan=False would raise
    edge = json.loads(text)["edges"][0]
    assert edge["effect"] is None and edge["metric_patched"] is None and edge["ci"] == [None, 1.0]
    assert not math.isnan(json.loads(text)["metric"]["clean"])


def test_failures_lists_refuted_and_inconclusive_with_reasons():
    failures = sample_result().failures()
    assert [f.what for f in failures] == [
        "edge duplicate->s_inhibition.v@S2", "edge previous->induction.k@S1+1", "claim completeness"]
    assert failures[0].verdict == "refuted" and "no negative effect" in failures[0].reason
    assert "minimality" not in " ".join(map(str, failures))  # unclaimed scores never fail


def test_edge_name_includes_via_and_position():
    edges = sample_result().edges
    assert edges[0].name == "name_movers->logits@END"
    assert edges[1].name == "s_inhibition->name_movers.q@END"


def test_save_and_load(tmp_path):
    path = tmp_path / "out" / "results.json"
    result = sample_result()
    result.save(path)
    assert Result.load(path) == result
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]


def test_load_reports_bad_files_clearly(tmp_path):
    path = tmp_path / "results.json"
    path.write_text("{not json")
    with pytest.raises(ResultFileError, match="results.json:1: not valid JSON"):
        Result.load(path)
    d = sample_result().to_json()
    d["edges"][0]["verdict"] = "maybe"
    path.write_text(json.dumps(d))
    with pytest.raises(ResultFileError, match="verdict must be one of"):
        Result.load(path)
    del d["metric"]
    path.write_text(json.dumps(d))
    with pytest.raises(ResultFileError, match="missing required field 'metric'"):
        Result.load(path)


def test_failed_save_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    path.write_text("old")

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", explode)
    with pytest.raises(OSError, match="disk full"):
        sample_result().save(path)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_atomic_write_uses_ordinary_permissions(tmp_path):
    fresh = atomic.atomic_write_text(tmp_path / "a.md", "x")
    plain = tmp_path / "b.md"
    plain.write_text("x")
    assert fresh.stat().st_mode == plain.stat().st_mode
    plain.chmod(0o640)
    assert atomic.atomic_write_text(plain, "y").stat().st_mode & 0o777 == 0o640


def test_atomic_open_removes_partial_file_when_writer_raises(tmp_path):
    path = tmp_path / "report.md"
    with pytest.raises(RuntimeError):
        with atomic.atomic_open(path) as handle:
            handle.write("half a report")
            raise RuntimeError("renderer crashed mid-way")
    assert list(tmp_path.iterdir()) == []


def test_staged_dir_moves_nothing_when_a_later_file_fails(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic.staged_dir(out) as stage:
            (stage / "results.json").write_text("new")
            (stage / "circuit.png").write_bytes(b"\x89PNG partial")
            raise RuntimeError("png renderer crashed")
    assert sorted(p.name for p in out.iterdir()) == ["results.json"]
    assert (out / "results.json").read_text() == "old"
    with atomic.staged_dir(out) as stage:
        (stage / "results.json").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["results.json"]
    assert (out / "results.json").read_text() == "new"


def test_non_finite_numbers_inside_details_are_written_as_null():
    """A score's details hold open JSON (power, intervals of the parts): a NaN there used to
    make save() raise (strict JSON), losing the run's results at the last step."""
    r = sample_result()
    nan, inf = float("nan"), float("inf")
    faith = replace(r.circuit.faithfulness, details={"power": {"half_width": nan, "n_prompts": 12},
                                                     "f_model_ci": (-inf, 1.0)})
    text = replace(r, circuit=replace(r.circuit, faithfulness=faith)).dumps()
    details = json.loads(text)["circuit"]["faithfulness"]["details"]
    assert details["power"] == {"half_width": None, "n_prompts": 12}
    assert details["f_model_ci"] == [None, 1.0]
