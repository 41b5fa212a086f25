"""Run settings are checked once, before any model work, and results.json records the
settings as they were used (the engine that really ran, not the one asked for)."""

from __future__ import annotations

import warnings
from dataclasses import FrozenInstanceError

import pytest

import circuitspec as cs
import circuitspec.patching.fast as fast_module
from circuitspec.ablation.keep import Keep
from circuitspec.ablation.node import AblationRunner
from circuitspec.data.ioi import build_ioi
from circuitspec.data.tasks import hypothesis_dataset
from circuitspec.errors import CircuitSpecError
from circuitspec.patching.exact import ExactEngine
from circuitspec.patching.fast import FastEngine
from circuitspec.patching.types import LOGITS, Sender
from circuitspec.spec.load import load_hypothesis
from circuitspec.verification.settings import QUICK_NULL, QUICK_PROMPTS, Options, resolve

FAST = {"n_random": 0, "n_random_edge": 0, "n_null_edges": 0, "n_bootstrap": 200, "robustness": False}


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
    ("engine", "quick"), ("bootstrap", "cluster"), ("device", "cuda:99"), ("device", "tpu"),
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


# --- one resolved settings object ----------------------------------------------------------


def write_partial_hypothesis(path, model_dir):
    """Only the last layer's heads as the circuit, so the ablation kind moves its faithfulness."""
    path.write_text(f"""name: tiny-partial
model: {model_dir}
task: {{kind: ioi, n_prompts: 12, seed: 0, corruption: abc}}
nodes:
  late: {{role: name_mover, heads: [L2H0, L2H1, L2H2, L2H3]}}
edges:
  - {{from: late, to: logits, at: END, expect: {{sign: negative, min_effect: 0.1}}}}
claims:
  faithfulness: {{min: 0.5}}
  minimality: off
""")
    return path


def test_resolve_puts_the_options_over_the_file_and_changes_no_option(tmp_path, tiny_model_dirs):
    hyp = load_hypothesis(write_partial_hypothesis(tmp_path / "h.yaml", tiny_model_dirs["llama"]))
    plain = resolve(hyp, Options())
    assert (plain.ablation, plain.semantics, plain.n_prompts, plain.seed) == ("mean", "path", 12, 0)
    assert (plain.n_bootstrap, plain.level, plain.ablation_level, plain.edge_positions) == (1000, 0.95, "node", "at")
    assert plain.robustness and plain.n_null_edges == 100
    asked = Options(ablation="resample", semantics="direct", n_prompts=8, seed=3, n_bootstrap=150,
                    templates=[1, 2], quick=True)
    used = resolve(hyp, asked)
    assert (used.ablation, used.semantics, used.n_prompts, used.seed) == ("resample", "direct", 8, 3)
    assert used.n_bootstrap == 150 and used.templates == (1, 2)
    assert used.n_null_edges == QUICK_NULL and not used.robustness  # what --quick means
    assert asked.n_null_edges == 100 and asked.robustness  # the caller's options are left alone
    with pytest.raises(FrozenInstanceError):
        used.ablation = "zero"  # type: ignore[misc]


def test_quick_verifies_fewer_prompts_unless_told_and_says_so(tmp_path, tiny_model_dirs):
    """--quick is the inner loop of someone editing a file: at most QUICK_PROMPTS prompts when the
    file asks for more, recorded beside the statistics so the console and report can say so;
    --n-prompts (or a full run) takes the count asked for."""
    hyp = load_hypothesis(write_partial_hypothesis(tmp_path / "h.yaml", tiny_model_dirs["llama"]))
    big = hyp.model_copy(update={"task": hyp.task.model_copy(update={"n_prompts": 2 * QUICK_PROMPTS})})
    quick = resolve(big, Options(quick=True))
    assert quick.n_prompts == QUICK_PROMPTS and quick.file_n_prompts == 2 * QUICK_PROMPTS
    said = quick.statistics(None)["quick_prompts"]
    assert said == f"{QUICK_PROMPTS} of the file's {2 * QUICK_PROMPTS} prompts"
    assert resolve(big, Options()).n_prompts == 2 * QUICK_PROMPTS
    told = resolve(big, Options(quick=True, n_prompts=2 * QUICK_PROMPTS))
    assert told.n_prompts == 2 * QUICK_PROMPTS and "quick_prompts" not in told.statistics(None)
    small = resolve(hyp, Options(quick=True))  # the file's 12: nothing to cut
    assert small.n_prompts == 12 and "quick_prompts" not in small.statistics(None)


def test_verify_leaves_the_callers_options_unchanged(tmp_path, tiny_model_dirs):
    """verify used to write --quick's caps (and keyword overrides) into the caller's Options,
    so a second run with the same object was quietly a quick one without a panel."""
    hyp = write_hypothesis(tmp_path / "h.yaml", tiny_model_dirs["llama"])
    opts = Options(quick=True, n_bootstrap=100)
    cs.verify(hyp, options=opts, scores=False, n_prompts=4)
    assert opts.n_null_edges == 100 and opts.robustness and opts.scores and opts.n_prompts is None


def test_overrides_are_what_results_json_records_and_what_the_run_used(tmp_path, tiny_model_dirs, tiny_models):
    path = write_partial_hypothesis(tmp_path / "h.yaml", tiny_model_dirs["llama"])
    result = cs.verify(path, ablation="resample", semantics="direct", n_prompts=8, seed=3, n_bootstrap=150,
                       n_null_edges=0, n_random=0, n_random_edge=0, n_subsets=1, greedy_steps=1,
                       robustness=False)
    recorded = result.to_json()["settings"]
    assert (recorded["ablation"], recorded["semantics"], recorded["n_bootstrap"]) == ("resample", "direct", 150)
    assert recorded["statistics"]["seed"] == 3 and recorded["statistics"]["n_null_edges"] == 0
    assert (result.task.n_prompts, result.task.seed) == (8, 3)
    # The run's prompts are the 8 of seed 3: the recorded clean metric is theirs, prompt by prompt.
    hyp, model = load_hypothesis(path), tiny_models["llama"]
    dataset = hypothesis_dataset(hyp, model.tokenizer, default_prepend_bos=model.info.default_prepend_bos,
                                 n_prompts=8, seed=3)
    resample = AblationRunner(model, dataset, "resample")
    assert result.metric.per_prompt["clean"] == pytest.approx(resample.clean.double().tolist(), abs=1e-5)
    # Its faithfulness is the circuit's under resample ablation, not under zero ablation.
    keep = [Keep.of([(2, h) for h in range(4)])]
    circuit = result.circuit.faithfulness.per_prompt["circuit"]
    assert circuit == pytest.approx(resample.run(keep)[0].double().tolist(), abs=1e-5)
    zero = AblationRunner(model, dataset, "zero").run(keep)[0].double().tolist()
    assert max(abs(a - b) for a, b in zip(circuit, zero, strict=True)) > 1e-3
