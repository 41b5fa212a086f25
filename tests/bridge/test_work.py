"""The cost model: token-layers counted where passes run, forward-equivalents per stage."""

from __future__ import annotations

import pytest
from helpers.ioi_prompts import ioi_dataset

from circuitspec.ablation.node import AblationRunner, Keep
from circuitspec.bridge.work import Work
from circuitspec.patching.exact import ExactEngine
from circuitspec.patching.fast import FastEngine
from circuitspec.patching.types import LOGITS, Receiver, Sender


def test_nested_stages_count_once_in_the_innermost():
    work = Work(per_forward=6)
    with work.at("a"):
        work.add(1, 2, 3)
        with work.at("b"):
            work.add(1, 1, 1)
        work.add(0, 5, 5)  # nothing
    work.add(2, 3, 1)  # outside any stage
    assert work.token_layers == {"a": 6, "b": 1, "other": 6}
    assert work.forward_equivalents() == {"a": 1.0, "b": 1 / 6, "other": 1.0}
    assert work.total == pytest.approx(13 / 6)
    assert set(work.seconds) == {"a", "b"} and all(s >= 0 for s in work.seconds.values())


def _unit(model, ds):
    return Work(per_forward=sum(len(t) for t in ds.clean) * model.info.n_layers)


def test_exact_engine_counts_full_passes(tiny_models):
    model = tiny_models["llama"]  # 3 layers, GQA 2 query heads per key/value head
    ds = ioi_dataset(model.tokenizer, n=6)
    work = _unit(model, ds)
    engine = ExactEngine(model, ds, work)
    assert work.total == pytest.approx(2.0)  # the clean and the corrupted caches
    engine.patch(Sender(heads=((1, 0),)), LOGITS)
    assert work.total == pytest.approx(3.0)  # one pass with the sender patched
    engine.patch(Sender(heads=((0, 0),)), Receiver(((2, 1),), "q", "END"))
    assert work.total == pytest.approx(5.0)  # pass C to the receiver (all 3 layers), pass D
    engine.patch(Sender(heads=((0, 0),)), Receiver(((1, 1),), "k", "END"))
    # pass C stops after layer 1 (2 of 3 layers); pass D runs two copies (GQA)
    assert work.total == pytest.approx(5.0 + 2 / 3 + 2)


def test_fast_engine_counts_only_the_rows_it_recomputes(tiny_models):
    model = tiny_models["gpt2"]
    ds = ioi_dataset(model.tokenizer, n=6)
    work = _unit(model, ds)
    engine = FastEngine(model, ds, work=work)
    setup = work.total
    assert 2.0 < setup < 3.0  # two cached passes and a self-check on two prompts per chunk
    engine.sweep(LOGITS, [Sender(heads=((0, 0),)), Sender(heads=((1, 2),))])
    # Pass C: each sender's END rows (6 of them) through layers first..3; no pass D.
    rows = 2 * 6 * (3 - 0)
    assert (work.total - setup) * work.per_forward == pytest.approx(rows)


def test_ablation_runner_counts_resumed_passes(tiny_models):
    model = tiny_models["llama"]
    ds = ioi_dataset(model.tokenizer, n=6)
    work = _unit(model, ds)
    runner = AblationRunner(model, ds, "mean", work=work, in_sample=True)
    assert runner.resume
    assert work.total == pytest.approx(2.0)  # corrupted activations, clean run
    runner.run([Keep.of([(2, 0)]), Keep.of([(2, 1)])])
    # The fully ablated reference once (1), then both keep-sets from layer 2 (1/3 each).
    assert work.total == pytest.approx(2.0 + 1.0 + 2 / 3)
    runner.run([Keep.of([(2, 0)])])  # memoised: no work
    assert work.total == pytest.approx(2.0 + 1.0 + 2 / 3)


def test_verify_reports_time_and_work_per_stage(tmp_path, tiny_model_dirs):
    import circuitspec as cs
    from circuitspec.output.report import render_markdown

    hyp = tmp_path / "h.yaml"
    hyp.write_text(f"""name: tiny
model: {tiny_model_dirs["llama"]}
task: {{kind: ioi, n_prompts: 8, seed: 0, corruption: abc}}
nodes:
  late: {{role: name_mover, heads: [L2H0, L2H1]}}
  early: {{role: induction, heads: [L0H1]}}
edges:
  - {{from: late, to: logits, at: END}}
  - {{from: early, to: late, via: q, at: END}}
claims:
  faithfulness: {{min: 0.5}}
""")
    result = cs.verify(hyp, n_bootstrap=100, n_random=10, n_random_edge=2, n_subsets=2, greedy_steps=1,
                       robustness=False)
    data = result.to_json()
    for stage in ("caches", "edges", "edge_nulls", "ablation_caches", "faithfulness", "completeness",
                  "minimality", "null", "edge_level", "edge_level_null"):
        assert stage in data["timings"] and stage in data["work"], stage
        assert data["work"][stage] > 0, stage
    assert 2.0 <= data["work"]["caches"] < 3.0  # clean and corrupted caches, a partial self-check
    text = render_markdown(result)
    assert "## Cost" in text and "forward-equivalents" in text and "| edge_nulls |" in text
    assert cs.Result.from_json(data).work == data["work"]
