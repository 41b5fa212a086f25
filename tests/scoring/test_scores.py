"""Node ablation and circuit scores on tiny models, checked against references written here."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from helpers.ablation_reference import logit_diff_one, manual_template_means, set_z, z_of
from helpers.ioi_prompts import ioi_dataset

from circuitspec.ablation.node import MAX_REFERENCES, AblationRunner, Keep, per_prompt_logit_diff
from circuitspec.bridge.work import Work
from circuitspec.data.dataset import Dataset
from circuitspec.results import as_json
from circuitspec.scoring.faithfulness import faithfulness
from circuitspec.scoring.scores import completeness, evaluate_circuit, minimality


@pytest.fixture(scope="module")
def datasets(tiny_models):
    return {fam: ioi_dataset(m.tokenizer, n=8) for fam, m in tiny_models.items()}


# ------------------------------------------------------------------- tests
@pytest.mark.parametrize("family", ["gpt2", "neox", "llama"])
def test_mean_ablating_every_head_matches_reference(tiny_models, datasets, family):
    model, ds = tiny_models[family], datasets[family]
    means = manual_template_means(model.bridge, ds)
    reference = [
        logit_diff_one(model.bridge, ds.clean[i], ds.positions["END"][i], ds.correct[i],
                        ds.incorrect[i], set_z(means[ds.template[i]]))
        for i in range(len(ds))
    ]
    got = per_prompt_logit_diff(model, ds, keep=set(), ablation="mean", in_sample=True)
    np.testing.assert_allclose(got.numpy(), reference, atol=1e-4)
    # ...and the clean run is really different, so the comparison has teeth.
    assert not np.allclose(AblationRunner(model, ds, in_sample=True).clean.numpy(), reference, atol=1e-2)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_resample_ablating_every_head_matches_reference(tiny_models, datasets, family):
    model, ds = tiny_models[family], datasets[family]
    reference = []
    for i in range(len(ds)):
        corrupted_z = z_of(model.bridge, ds.corrupt[i])
        reference.append(logit_diff_one(model.bridge, ds.clean[i], ds.positions["END"][i],
                                         ds.correct[i], ds.incorrect[i], set_z(corrupted_z)))
    got = per_prompt_logit_diff(model, ds, keep=set(), ablation="resample")
    np.testing.assert_allclose(got.numpy(), reference, atol=1e-4)


def test_zero_ablation_of_some_heads_matches_reference(tiny_models, datasets):
    model, ds = tiny_models["neox"], datasets["neox"]
    keep = {(0, 1), (1, 2), (2, 0), (2, 3)}
    reference = []
    for i in range(len(ds)):
        length = len(ds.clean[i])
        where = {L: torch.ones(length, 4, dtype=torch.bool) for L in range(3)}
        for L, h in keep:
            where[L][:, h] = False
        zeros = {L: torch.zeros(1, 1, 8) for L in range(3)}
        reference.append(logit_diff_one(model.bridge, ds.clean[i], ds.positions["END"][i],
                                         ds.correct[i], ds.incorrect[i], set_z(zeros, where)))
    got = per_prompt_logit_diff(model, ds, keep=keep, ablation="zero")
    np.testing.assert_allclose(got.numpy(), reference, atol=1e-4)


def test_circuit_positions_restrict_heads(tiny_models, datasets):
    model, ds = tiny_models["gpt2"], datasets["gpt2"]
    means = manual_template_means(model.bridge, ds)
    head = (1, 2)
    reference = []
    for i in range(len(ds)):
        where = {L: torch.zeros(len(ds.clean[i]), 4, dtype=torch.bool) for L in range(3)}
        end = ds.positions["END"][i]
        where[1][:, 2] = True
        where[1][end, 2] = False  # the head runs normally only at END
        reference.append(logit_diff_one(model.bridge, ds.clean[i], end, ds.correct[i],
                                         ds.incorrect[i], set_z(means[ds.template[i]], where)))
    got = per_prompt_logit_diff(model, ds, keep=None, circuit_positions={head: ["END"]}, in_sample=True)
    np.testing.assert_allclose(got.numpy(), reference, atol=1e-4)
    runner = AblationRunner(model, ds, in_sample=True)
    assert not np.allclose(got.numpy(), runner.clean.numpy(), atol=1e-3)
    with pytest.raises(ValueError, match="unknown position"):
        runner.logit_diff(None, circuit_positions={head: ["S9"]})


def test_mean_is_per_template_by_hand(tiny_models):
    model = tiny_models["gpt2"]
    ds = ioi_dataset(model.tokenizer, n=6, seed=3)
    runner = AblationRunner(model, ds, "mean", in_sample=True)
    for t in (0, 1):
        members = [i for i in range(len(ds)) if ds.template[i] == t]
        for layer in range(3):
            manual = torch.stack([z_of(model.bridge, ds.corrupt[i])[layer] for i in members]).mean(0)
            for i in members:
                torch.testing.assert_close(runner.z_replacement(i, layer), manual, atol=1e-5, rtol=0)


def test_mean_equals_resample_when_a_template_has_one_corruption(tiny_models):
    # Hand-computable: the mean over identical corrupted prompts is that prompt's z.
    model = tiny_models["llama"]
    ds = ioi_dataset(model.tokenizer, n=6, seed=1, fixed_corrupt=True)
    keep = {(1, 0), (2, 2)}
    mean = per_prompt_logit_diff(model, ds, keep=keep, ablation="mean", in_sample=True)
    resample = per_prompt_logit_diff(model, ds, keep=keep, ablation="resample")
    torch.testing.assert_close(mean, resample, atol=1e-4, rtol=0)
    varied = ioi_dataset(model.tokenizer, n=6, seed=1)
    assert not torch.allclose(per_prompt_logit_diff(model, varied, keep=keep, ablation="mean", in_sample=True),
                              per_prompt_logit_diff(model, varied, keep=keep, ablation="resample"),
                              atol=1e-3)


def test_batched_keep_sets_match_one_at_a_time(tiny_models, datasets):
    model, ds = tiny_models["llama"], datasets["llama"]
    keeps = [set(), {(0, 0)}, {(1, 1), (2, 3)}, {(0, 2), (1, 0), (2, 1)}]
    batched = AblationRunner(model, ds, in_sample=True).run(keeps)
    small = AblationRunner(model, ds, max_tokens=1, in_sample=True)  # one prompt per forward pass
    single = torch.stack([small.logit_diff(k) for k in keeps])
    torch.testing.assert_close(batched, single, atol=1e-4, rtol=0)


@pytest.mark.parametrize("family", ["gpt2", "neox", "llama"])
def test_resumed_passes_match_full_passes(tiny_models, datasets, family):
    model, ds = tiny_models[family], datasets[family]
    everything = {(L, h) for L in range(3) for h in range(4)}
    keeps = [Keep.of(set()), Keep.of({(1, 1), (2, 3)}), Keep.of({(2, 0)}), Keep.of(everything - {(1, 2)}),
             Keep.of(everything - {(2, 1), (2, 3)}), Keep.of({(0, 2), (2, 1)}),
             Keep.of({(1, 0), (2, 2)}, circuit_positions={(1, 0): ["S2"]}),
             Keep.of({(1, 0), (2, 2)}, mlps=[0, 2])]
    resumed, full = Work(per_forward=1), Work(per_forward=1)
    fast = AblationRunner(model, ds, "mean", in_sample=True, work=resumed)
    assert fast.resume
    got = fast.run(keeps)
    plain = AblationRunner(model, ds, "mean", in_sample=True, resume=False, work=full)
    torch.testing.assert_close(got, plain.run(keeps), atol=1e-5, rtol=0)
    # Teeth: the same numbers from fewer token-layers, so passes really started past layer 0
    # (the exact count, by hand, is in the next test).
    assert 0 < resumed.total < full.total
    # A small token budget: one prompt per pass, references cached per slice.
    small = AblationRunner(model, ds, "resample", max_tokens=1)
    torch.testing.assert_close(small.run(keeps),
                               AblationRunner(model, ds, "resample", resume=False).run(keeps),
                               atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_keep_sets_sharing_layers_match_full_passes_and_share_the_work(tiny_models, datasets, family):
    """The runner's prefix tree: keep-sets that agree up to a layer share the pass through it.
    Checked against full passes (no resuming, one copy per keep-set) and by its work count."""
    model, ds = tiny_models[family], datasets[family]  # 3 layers, 4 heads
    circuit = {(0, 1), (1, 2), (2, 0), (2, 3)}
    keeps = [Keep.of(circuit - {h}) for h in sorted(circuit)] + [Keep.of(circuit)]
    keeps += [Keep.of(circuit - {(1, 2), h}) for h in [(2, 0), (2, 3)]]
    keeps += [Keep.of(circuit, circuit_positions={(2, 3): ["S2"]}), Keep.of(circuit, mlps=[0, 1])]
    work = Work(per_forward=sum(len(t) for t in ds.clean) * 3)
    tree = AblationRunner(model, ds, "mean", in_sample=True, work=work)
    before = work.total
    got = tree.run(keeps)
    plain = AblationRunner(model, ds, "mean", in_sample=True, resume=False)
    torch.testing.assert_close(got, plain.run(keeps), atol=1e-5, rtol=0)
    # By hand, in forward-equivalents (a third of one per layer). C - L0H1 starts at layer 1
    # from the fully ablated run: that reference (1) and 2 layers. The other eight keep L0H1 and
    # run from the tokens: one copy through layer 0; two through layer 1 (L1H2 kept or not);
    # at layer 2 eight (every keep-set's layer-2 mask differs, the S2 and MLP ones included).
    expected = 1 + 2 / 3 + (1 + 2 + 8) / 3
    assert work.total - before == pytest.approx(expected)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_keep_sets_resume_from_a_registered_circuit_run(tiny_models, datasets, family):
    """C \\ K agrees with the circuit's own run below K's first layer: once C is registered as
    a reference, separate calls resume from its cached residuals there. Checked against full
    passes and by a hand count of the work."""
    model, ds = tiny_models[family], datasets[family]  # 3 layers, 4 heads
    circuit = {(0, 1), (1, 2), (2, 0), (2, 3)}
    keeps = [Keep.of(circuit - {h}) for h in [(2, 0), (2, 3), (1, 2)]]
    keeps.append(Keep.of(circuit - {(2, 0)}, mlps=[0, 1]))  # the MLP of layer 2 ablated too
    per_forward = sum(len(t) for t in ds.clean) * 3
    plain = AblationRunner(model, ds, "mean", in_sample=True, resume=False)
    expected = plain.run(keeps)
    for registered in (False, True):
        work = Work(per_forward=per_forward)
        runner = AblationRunner(model, ds, "mean", in_sample=True, work=work)
        if registered:
            runner.add_reference(Keep.of(circuit))
        before = work.total
        got = torch.cat([runner.run([k]) for k in keeps])  # one call each: no prefix tree between them
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
        # By hand (a third of a forward per layer). Without the reference each keep-set keeps
        # L0H1 and runs from the tokens: 4 x 1. With it: C's own run once (1), then
        # C - L2H0, C - L2H3 and C - L2H0 without MLP 2 from layer 2 (3 x 1/3), C - L1H2 from
        # layer 1 (2/3).
        assert work.total - before == pytest.approx(1 + 3 / 3 + 2 / 3 if registered else 4)
    # A registered run that is evicted takes its cached residuals with it.
    for extra in [circuit - {(0, 1)}, circuit - {(1, 2)}, circuit - {(2, 0)}]:
        runner.add_reference(Keep.of(extra))
    assert len(runner._ref_keeps) == 2 + MAX_REFERENCES
    assert all(key[3] in runner._ref_keeps or key[3] == "ablated z" for key in runner._refs)


@pytest.mark.parametrize("family", ["gpt2", "neox", "llama", "gemma3"])
def test_direct_blocks_match_the_bridges_forward(tiny_models, tiny_gemma3, family):
    """Resumed segments run the blocks with RowModel (no hooks) where the architecture allows;
    they match the bridge's own forward with hooks, segment for segment, and full passes.
    Gemma 3: sandwich and q/k norms, local layers, grouped keys and values."""
    model = tiny_gemma3 if family == "gemma3" else tiny_models[family]
    ds = ioi_dataset(model.tokenizer, n=8)
    n_layers = model.info.n_layers
    everything = {(L, h) for L in range(n_layers) for h in range(model.info.n_heads)}
    keeps = [Keep.of({(1, 1), (2, 3)}), Keep.of(everything - {(1, 2)}), Keep.of(everything - {(2, 1), (2, 3)}),
             Keep.of({(0, 2), (2, 1)}), Keep.of({(1, 0), (2, 2)}, circuit_positions={(1, 0): ["S2"]}),
             Keep.of({(1, 0), (2, 2)}, mlps=[0, 2]), Keep.of(everything, mlps=[0, 1])]
    direct = AblationRunner(model, ds, "mean", in_sample=True)
    assert direct.rows is not None
    hooked = AblationRunner(model, ds, "mean", in_sample=True, direct=False)
    assert hooked.rows is None and hooked.resume
    got = direct.run(keeps)
    torch.testing.assert_close(got, hooked.run(keeps), atol=2e-5, rtol=0)
    torch.testing.assert_close(got, AblationRunner(model, ds, "mean", in_sample=True, resume=False).run(keeps), atol=2e-5, rtol=0)
    # Teeth: the values differ between keep-sets, so a path that ignored the masks would fail.
    assert float((got[0] - got[1]).abs().max()) > 1e-2


def test_template_of_mixed_lengths_is_refused(tiny_models, datasets):
    ds = datasets["gpt2"]
    bad = Dataset(ds.clean, ds.corrupt, ds.correct, ds.incorrect, ds.positions,
                  (0,) * len(ds), ds.prepend_bos)
    with pytest.raises(ValueError, match="different token lengths"):
        AblationRunner(tiny_models["gpt2"], bad, in_sample=True)


def test_whole_model_is_exactly_faithful_and_empty_circuit_is_f_empty(tiny_models, datasets):
    model, ds = tiny_models["gpt2"], datasets["gpt2"]
    runner = AblationRunner(model, ds, in_sample=True)
    everything = [(L, h) for L in range(3) for h in range(4)]
    score = faithfulness(runner, everything, threshold=0.9)
    assert score.value == 1.0
    assert score.ci == (1.0, 1.0)
    assert score.verdict == "verified"
    empty = runner.logit_diff(set()).double().mean() / runner.clean.double().mean()
    one = faithfulness(runner, [(0, 0)])
    assert one.value != pytest.approx(1.0, abs=1e-3)
    assert one.verdict is None and "no faithfulness claim" in one.reason
    assert float(empty) != pytest.approx(1.0, abs=1e-3)
    with pytest.raises(ValueError, match="do not exist"):
        runner.logit_diff({(3, 0)})


def test_completeness_minimality_on_tiny_model(tiny_models, datasets):
    model, ds = tiny_models["gpt2"], datasets["gpt2"]
    runner = AblationRunner(model, ds, in_sample=True)
    groups = {"late": [(2, 0), (2, 1)], "mid": [(1, 3)], "early": [(0, 2)]}
    comp = completeness(runner, groups, threshold=0.15, n_subsets=20, greedy_steps=2)
    searched = comp.details["searched"]
    names = [s["name"] for s in searched]
    assert names[0] == "empty" and {"group:late", "group:mid", "group:early"} <= set(names)
    assert any(n.startswith("random:") for n in names)
    path = comp.details["greedy_path"]
    assert len(path) == 2 and len(path[0]["heads"]) == 1 and len(path[1]["heads"]) == 2
    assert set(path[0]["heads"]) < set(path[1]["heads"])
    # The empty K is |F(C) - F(M)| / F(M), computed independently here.
    fm = runner.clean.double().mean()
    fc = runner.logit_diff({(2, 0), (2, 1), (1, 3), (0, 2)}).double().mean()
    assert searched[0]["relative_gap"] == pytest.approx(float(abs(fc - fm) / abs(fm)), rel=1e-6)
    assert comp.value == pytest.approx(max(s["relative_gap"] for s in searched))
    assert comp.ci[0] <= comp.value <= comp.ci[1]
    assert comp.verdict in ("verified", "refuted", "inconclusive")

    mini = minimality(runner, groups, [[], [(2, 0)]], threshold=0.01)
    assert set(mini.details["per_head"]) == {"L2H0", "L2H1", "L1H3", "L0H2"}
    assert mini.value == pytest.approx(min(mini.details["per_head"].values()))


def test_inert_head_has_zero_minimality(tiny_model_dirs, tmp_path):
    from transformers import AutoModelForCausalLM

    from circuitspec.bridge.loading import load_model

    hf = AutoModelForCausalLM.from_pretrained(tiny_model_dirs["gpt2"])
    with torch.no_grad():  # head 1 of layer 2 writes nothing: rows 8:16 of c_proj (Conv1D)
        hf.transformer.h[2].attn.c_proj.weight[8:16].zero_()
    hf.save_pretrained(tmp_path)
    for f in tiny_model_dirs["gpt2"].glob("*token*"):
        (tmp_path / f.name).write_bytes(f.read_bytes())
    model = load_model(str(tmp_path))
    ds = ioi_dataset(model.tokenizer, n=6)
    runner = AblationRunner(model, ds, in_sample=True)
    groups = {"a": [(2, 1), (2, 0)], "b": [(1, 1)]}
    mini = minimality(runner, groups, [[(1, 1)]], threshold=0.001)
    assert mini.details["per_head"]["L2H1"] == pytest.approx(0.0, abs=1e-5)
    assert mini.details["per_head"]["L2H0"] > 0.001
    assert mini.details["weakest"] == "L2H1"
    assert mini.details["below_threshold"] == ["L2H1"]
    assert mini.verdict == "refuted"


def test_evaluate_circuit_gives_results_json_scores_and_is_seeded(tiny_models, datasets):
    model, ds = tiny_models["llama"], datasets["llama"]
    groups = {"late": [(2, 0), (2, 1)], "mid": [(1, 3)]}
    kw = dict(faithfulness_min=0.5, completeness_max_gap=0.2, minimality_min=0.01,
              n_random=30, n_subsets=20, n_bootstrap=200, seed=1, in_sample=True)
    res = evaluate_circuit(model, ds, groups, **kw)
    text = json.dumps(as_json(res), allow_nan=False)  # the circuit section of results.json
    data = json.loads(text)
    for name in ("faithfulness", "completeness", "minimality"):
        assert data[name]["verdict"] in ("verified", "refuted", "inconclusive")
        assert len(data[name]["ci"]) == 2
    assert data["null"]["n"] == 30 and data["null"]["kind"] == "layer_matched"
    runner = AblationRunner(model, ds, in_sample=True)
    assert res.f_model == pytest.approx(float(runner.clean.double().mean()))
    assert res.f_empty == pytest.approx(float(runner.logit_diff(set()).double().mean()))
    assert res.faithfulness.value == pytest.approx(res.f_circuit / res.f_model)
    again = evaluate_circuit(model, ds, groups, runner=runner, **kw)
    assert again.completeness.value == res.completeness.value
    assert again.minimality.ci == res.minimality.ci
    assert Keep.of([(1, 3)]) == Keep.of({(1, 3)})


def test_evaluate_circuits_mean_ablated_faithfulness_is_the_one_verify_gives(tmp_path, tiny_model_dirs, tiny_models):
    """evaluate_circuit's default mean ablation takes its means from the separate pool verify
    builds, so its F is verify's on the same prompts. It used the scored prompts' own
    corrupted partners (an in-sample mean) with no word about it (review finding 15)."""
    import circuitspec as cs
    from circuitspec.data.tasks import hypothesis_dataset

    model = tiny_models["llama"]
    path = tmp_path / "h.yaml"
    path.write_text(f"""name: t
model: {tiny_model_dirs["llama"]}
task: {{kind: ioi, n_prompts: 8, seed: 3, corruption: abc}}
nodes:
  a: {{role: other, heads: [L0H1]}}
  b: {{role: name_mover, heads: [L2H0, L2H1]}}
edges:
  - {{from: a, to: logits, at: END}}
  - {{from: b, to: logits, at: END}}
""")
    result = cs.verify(path, model, n_random=0, n_random_edge=0, n_null_edges=0, n_bootstrap=100,
                       robustness=False, per_head=False)
    assert result.circuit is not None
    assert result.settings.ablation == "mean" and result.settings.ablation_level == "node"
    dataset = hypothesis_dataset(cs.load_hypothesis(path), model.tokenizer,
                                 default_prepend_bos=model.info.default_prepend_bos, seed=3)
    groups = {"a": [(0, 1)], "b": [(2, 0), (2, 1)]}
    kw = dict(n_random=0, n_subsets=0, greedy_steps=0, n_bootstrap=100, seed=3)
    pooled = evaluate_circuit(model, dataset, groups, **kw)
    assert pooled.faithfulness.value == pytest.approx(result.circuit.faithfulness.value, abs=1e-6)
    in_sample = evaluate_circuit(model, dataset, groups, in_sample=True, **kw)
    assert abs(in_sample.faithfulness.value - pooled.faithfulness.value) > 1e-3  # the means matter here


def test_a_mean_ablation_runner_without_a_pool_says_its_mean_is_in_sample(tiny_models, datasets):
    from circuitspec.ablation.mean_pool import build_mean_pool, pool_seed

    model, ds = tiny_models["llama"], datasets["llama"]
    with pytest.warns(UserWarning, match="in-sample mean"):
        AblationRunner(model, ds, "mean")
    with pytest.warns(UserWarning, match="in-sample mean"):
        AblationRunner(model, ds)  # mean is the default
    pool = build_mean_pool(model, ds, generate=False, seed=pool_seed(0))  # any pool object will do
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        AblationRunner(model, ds, "mean", in_sample=True)
        AblationRunner(model, ds, "mean", mean_pool=pool)
        AblationRunner(model, ds, "resample")
