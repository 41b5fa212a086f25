"""results.json golden files: reading a file and writing it again gives the same bytes.

Two inputs under ``tests/fixtures/results/``:

- ``smollm2_older.json``: the shipped SmolLM2 results.json (docs/circuits), trimmed. It was
  written before ``per_prompt``, ``work``, ``mode``, ``bootstrap_unit`` and ``edge_positions``
  existed, so it checks that missing keys take their defaults.
- ``tiny_nonfinite.json``: a tiny-model verify in today's layout, trimmed, with every
  optional part (edge, circuit and edge-level nulls, MIB faithfulness, breakdown, held-out
  info), ``NaN``/``Infinity`` tokens in number fields, an integer where a float is kept, keys
  out of order and a key no version writes.

Each ``*.golden.json`` is what circuitspec wrote for its input before results.json was
read and written through pydantic (commit "golden files"); the checks by hand below say what
in it is deliberate (key order, non-finite numbers as null, float text).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from circuitspec.results import Result
from circuitspec.results_schema import results_json_schema

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
