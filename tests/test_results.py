"""Result dataclasses: JSON round trip, contract key names, failures(), atomic save."""

from __future__ import annotations

import json
import math

import pytest

from circuitspec.errors import ResultFileError
from circuitspec.output import atomic
from circuitspec.results import (
    CircuitScores,
    EdgeResult,
    Expectation,
    HeadEffect,
    HypothesisInfo,
    MetricResult,
    ModelInfo,
    NodeInfo,
    NullDistribution,
    Result,
    RobustnessRow,
    Score,
    Settings,
    TaskInfo,
    Versions,
)

NODES = (
    NodeInfo("name_movers", "name_mover", ("L9H9", "L9H6", "L10H0")),
    NodeInfo("backup", "backup_name_mover", ("L10H10", "L10H6")),
    NodeInfo("s_inhibition", "s_inhibition", ("L7H3", "L7H9", "L8H6", "L8H10")),
    NodeInfo("induction", "induction", ("L5H5", "L5H8", "L5H9", "L6H9")),
    NodeInfo("duplicate", "duplicate_token", ("L0H1", "L0H10", "L3H0")),
    NodeInfo("previous", "previous_token", ("L2H2", "L4H11"), mlps=(3,)),
)


def _edge(sender, receiver, via, at, effect, ci, verdict, reason="", heads=()):
    return EdgeResult(
        sender, receiver, via, at, metric_patched=3.2 * (1 + effect), effect=effect, ci=ci,
        verdict=verdict, reason=reason, expect=Expectation("negative", 0.05),
        per_head=tuple(HeadEffect(h, effect / len(heads), (ci[0] / len(heads), ci[1] / len(heads)))
                       for h in heads),
    )


def sample_result(passed: bool = False) -> Result:
    """A small IOI-like result: three verified edges, one refuted, one inconclusive."""
    edges = (
        _edge("name_movers", "logits", None, "END", -0.62, (-0.70, -0.55), "verified",
              "interval below -0.05", ("L9H9", "L9H6", "L10H0")),
        _edge("s_inhibition", "name_movers", "q", "END", -0.41, (-0.48, -0.35), "verified",
              "interval below -0.05", ("L7H3", "L7H9", "L8H6", "L8H10")),
        _edge("induction", "s_inhibition", "v", "S2", -0.18, (-0.24, -0.12), "verified",
              "interval below -0.05"),
        _edge("duplicate", "s_inhibition", "v", "S2", 0.02, (-0.01, 0.04), "refuted",
              "interval lies above -0.05: no negative effect"),
        _edge("previous", "induction", "k", "S1+1", -0.06, (-0.11, 0.00), "inconclusive",
              "interval straddles -0.05"),
    )
    circuit = CircuitScores(
        faithfulness=Score(0.87, (0.80, 0.93), "verified", "lower bound 0.80 >= 0.8",
                           {"f_model": 3.2, "f_circuit": 2.78}),
        completeness=Score(0.19, (0.12, 0.26), "inconclusive", "interval straddles max_gap 0.15",
                           {"worst_subset": ["backup", "name_movers"]}),
        minimality=Score(0.04, (0.01, 0.07), None, "no claim"),
        null=NullDistribution(0.05, -0.02, 0.13, 100), f_model=3.2, f_circuit=2.78,
    )
    return Result(
        hypothesis=HypothesisInfo("ioi-gpt2-small", "hypotheses/ioi.yaml", "IOI, Wang et al.", NODES),
        model=ModelInfo("gpt2", "openai-community/gpt2", None, 12, 12, 12),
        task=TaskInfo("ioi", 128, 0, "abc", True, None),
        metric=MetricResult("logit_diff", 3.2, -0.4, (3.0, 3.4), (-0.6, -0.2)),
        edges=edges, circuit=circuit, passed=passed,
        settings=Settings("path", "mean", False, "fast", 1000),
        versions=Versions("0.1.0", "2.13.0", "4.3.0", "5.24.0", "3.11.7"),
        timings={"load_model": 1.5, "edges": 12.25},
        robustness=(RobustnessRow("ablation=resample", 0.84, {edges[0].name: -0.6}),
                    RobustnessRow("corruption=s_swap", 0.79, {edges[0].name: -0.58})),
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
                                    "bootstrap_unit", "statistics"}


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
