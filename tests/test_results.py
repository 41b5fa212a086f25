"""Result dataclasses: JSON round trip, contract key names, golden files, the schema, failures(), atomic save."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import jsonschema
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
from circuitspec.results_schema import results_json_schema


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


# --- golden files -------------------------------------------------------------------------
# results.json golden files: reading a file and writing it again gives the same bytes.
#
# Two inputs under ``tests/fixtures/results/``:
#
# - ``smollm2_older.json``: the shipped SmolLM2 results.json (docs/circuits), trimmed. It was
#   written before ``per_prompt``, ``work``, ``mode``, ``bootstrap_unit`` and ``edge_positions``
#   existed, so it checks that missing keys take their defaults.
# - ``tiny_nonfinite.json``: a tiny-model verify in today's layout, trimmed, with every
#   optional part (edge, circuit and edge-level nulls, MIB faithfulness, breakdown, held-out
#   info), ``NaN``/``Infinity`` tokens in number fields, an integer where a float is kept, keys
#   out of order and a key no version writes.
#
# Each ``*.golden.json`` is what circuitspec wrote for its input before results.json was
# read and written through pydantic (commit "golden files"); the checks by hand below say what
# in it is deliberate (key order, non-finite numbers as null, float text).

FIXTURES = Path(__file__).parent / "fixtures" / "results"
NAMES = ("smollm2_older", "tiny_nonfinite")


def golden(name: str) -> str:
    return (FIXTURES / f"{name}.golden.json").read_text()


@pytest.mark.parametrize("name", NAMES)
def test_reading_and_writing_gives_the_golden_bytes(name):
    assert Result.load(FIXTURES / f"{name}.json").dumps() == golden(name)
    assert Result.load(FIXTURES / f"{name}.golden.json").dumps() == golden(name)


@pytest.mark.parametrize("name", NAMES)
def test_golden_files_validate_against_the_results_schema(name):
    jsonschema.validate(json.loads(golden(name)), results_json_schema())


def test_key_order_is_the_documented_one():
    d = json.loads(golden("tiny_nonfinite"))
    assert list(d) == ["schema_version", "hypothesis", "model", "task", "metric", "edges", "circuit",
                       "passed", "settings", "versions", "timings", "work", "mode", "robustness",
                       "held_out", "held_out_info", "breakdown"]
    assert list(d["edges"][0]) == ["from", "to", "via", "at", "metric_patched", "effect", "ci", "verdict",
                                   "reason", "expect", "per_head", "null", "per_prompt"]
    assert list(d["circuit"]) == ["faithfulness", "faithfulness_edge_level", "faithfulness_mib",
                                  "completeness", "minimality", "null", "null_edge_level", "f_model",
                                  "f_circuit", "f_empty", "f_empty_ci"]
    assert list(d["edges"][0]["null"]) == ["mean", "low", "high", "n", "real", "fraction_beaten", "p_value",
                                           "kind", "off_layer", "nonfinite", "layers", "widened", "n_distinct"]
    assert list(d["settings"]) == ["semantics", "ablation", "freeze_mlps", "engine", "n_bootstrap",
                                   "ablation_level", "ablation_scope", "mean_pool", "bootstrap_unit",
                                   "statistics", "edge_positions"]
    assert list(d["robustness"][0]) == ["setting", "faithfulness", "edge_effects", "ci", "verdict"]
    assert list(d["robustness"][-1]) == ["setting", "faithfulness", "edge_effects"]  # no ci, no verdict


def test_non_finite_numbers_are_written_as_null():
    d = json.loads(golden("tiny_nonfinite"))
    edge = d["edges"][0]
    assert edge["effect"] is None and edge["ci"][0] is None and edge["ci"][1] == -0.9
    assert edge["per_head"][0]["effect"] is None
    assert edge["null"]["mean"] is None and edge["null"]["high"] is None and edge["null"]["low"] == -0.02
    assert d["metric"]["per_prompt"]["clean"][1] is None
    assert "real" not in d["circuit"]["null_edge_level"]  # an optional number that is NaN: left out
    assert d["circuit"]["f_empty_ci"][0] is None
    assert d["robustness"][0]["faithfulness"] is None
    text = golden("tiny_nonfinite")
    assert "NaN" not in text and "Infinity" not in text


def test_float_text_is_pythons():
    text = golden("tiny_nonfinite")
    assert '"clean": 3.0,' in text  # an integer in a number field is written as a float
    assert '"p_value": 1e-05,' in text  # repr, not "1e-5" or "0.00001"
    assert '"n": 100,' in text  # counts stay integers


def test_keys_missing_in_older_files_take_their_defaults():
    r = Result.load(FIXTURES / "smollm2_older.json")
    assert r.settings.edge_positions == "every" and r.settings.bootstrap_unit == "prompt"
    assert r.settings.mean_pool is None and r.settings.statistics is None
    assert r.mode == "full" and r.work == {} and r.breakdown is None and r.held_out is None
    assert r.metric.per_prompt is None and r.edges[0].per_prompt is None
    assert r.circuit is not None and r.circuit.faithfulness_edge_level is not None
    assert r.circuit.null_edge_level is None and r.circuit.faithfulness_mib is None
    d = json.loads(golden("smollm2_older"))
    assert "robustness" in d and "held_out" not in d and "breakdown" not in d


def test_unknown_keys_are_ignored():
    d = json.loads((FIXTURES / "tiny_nonfinite.golden.json").read_text())
    d["from_the_future"] = {"x": 1}
    d["edges"][0]["also_new"] = [1, 2]
    d["settings"]["new_setting"] = "on"
    d["circuit"]["faithfulness"]["new"] = 1.0
    assert Result.from_json(d).dumps() == golden("tiny_nonfinite")


def test_schema_command_prints_the_schema_the_golden_files_validate_against():
    out = subprocess.run([sys.executable, "-m", "circuitspec.cli", "schema", "--results"],
                         capture_output=True, text=True, check=True).stdout
    schema = json.loads(out)
    assert schema == results_json_schema()
    settings = schema["properties"]["settings"]["properties"]
    assert settings["ablation"]["enum"] == ["mean", "resample", "zero"]  # closed choices, from the types
    assert "Bootstrap resamples" in settings["n_bootstrap"]["description"]  # docstrings, from the types
    for name in NAMES:
        jsonschema.validate(json.loads(golden(name)), schema)
    bad = json.loads(golden("tiny_nonfinite"))
    bad["edges"][0]["verdict"] = "maybe"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
