"""Run settings are checked once, before any model work, and results.json records the
settings as they were used (the engine that really ran, not the one asked for)."""

from __future__ import annotations

import warnings

import pytest

import circuitspec as cs
import circuitspec.patching.fast as fast_module
from circuitspec.data.ioi import build_ioi
from circuitspec.errors import CircuitSpecError
from circuitspec.patching.exact import ExactEngine
from circuitspec.patching.fast import FastEngine
from circuitspec.patching.types import LOGITS, Sender

FAST = {"n_random": 10, "n_random_edge": 0, "n_null_edges": 0, "n_bootstrap": 200, "robustness": False}


def write_hypothesis(path, model_dir):
    """The whole tiny model as one group into the logits: a file that verifies."""
    heads = ", ".join(f"L{layer}H{h}" for layer in range(3) for h in range(4))
    path.write_text(f"""name: tiny-circuit
model: {model_dir}
task: {{kind: ioi, n_prompts: 12, seed: 0, corruption: abc}}
nodes:
  movers: {{role: name_mover, heads: [{heads}]}}
edges:
  - {{from: movers, to: logits, at: END, expect: {{sign: negative, min_effect: 0.5}}}}
claims:
  faithfulness: {{min: 0.9}}
  minimality: off
""")
    return path


@pytest.fixture()
def no_model_work(monkeypatch):
    """Any attempt to load a model fails the test: the error must come first."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the settings were checked")

    # verify() calls the load_model its module imported, so that is the one refused.
    monkeypatch.setattr("circuitspec.verification.run.load_model", refuse)


@pytest.mark.parametrize(("key", "value"), [
    ("semantics", "Path"), ("semantics", "patch"), ("ablation", "avg"), ("ablation_level", "circuit"),
    ("engine", "quick"), ("bootstrap", "cluster"),
])
def test_bad_setting_fails_before_any_model_work(tmp_path, tiny_model_dirs, no_model_work, key, value):
    hyp = write_hypothesis(tmp_path / "h.yaml", tiny_model_dirs["llama"])
    with pytest.raises(CircuitSpecError, match=repr(value)):
        cs.verify(hyp, **{key: value})


@pytest.mark.parametrize("engine_cls", [ExactEngine, FastEngine])
def test_engines_refuse_an_unknown_semantics(tiny_models, engine_cls):
    model = tiny_models["llama"]
    engine = engine_cls(model, build_ioi(model.tokenizer, n_prompts=4, seed=0, corruption="abc", prepend_bos=False))
    with pytest.raises(CircuitSpecError, match="'Path'"):
        engine.patch(Sender(heads=((0, 0),)), LOGITS, semantics="Path")


def test_forced_fallback_records_the_reference_engine(tmp_path, tiny_model_dirs, monkeypatch):
    monkeypatch.setattr(fast_module, "unsupported_reason", lambda bridge: "pretend")
    hyp = write_hypothesis(tmp_path / "h.yaml", tiny_model_dirs["llama"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = cs.verify(hyp, engine="fast", **FAST)
    assert result.settings.engine == "reference"
    assert result.to_json()["settings"]["engine"] == "reference"
