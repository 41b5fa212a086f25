"""Layer-matched nulls: drawing, the Monte Carlo p-value, the sequential rule, per-edge nulls."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import circuitspec as cs
from circuitspec.results import as_json
from circuitspec.scoring.edge_null import judge_with_null
from circuitspec.scoring.nulls import LayerMatched, MonteCarlo, NullDraws, p_value, run_null, stream


def test_p_value_has_the_plus_one_correction():
    assert p_value(0, 100) == 1 / 101
    assert p_value(4, 19) == 5 / 20


def test_layer_matched_draws_stay_in_their_layer_and_outside_the_hypothesis():
    excluded = frozenset({(1, 0), (1, 1), (2, 3)})
    pool = LayerMatched(n_layers=3, n_heads=4, excluded=excluded)
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(200):
        image, off = pool.draw([(1, 0), (1, 1), (2, 3)], rng)
        assert off == 0
        assert sorted(image) == [(1, 0), (1, 1), (2, 3)]
        assert {image[(1, 0)], image[(1, 1)]} == {(1, 2), (1, 3)}  # the only spare heads of layer 1
        assert image[(2, 3)][0] == 2 and image[(2, 3)] not in excluded
        seen.add(image[(2, 3)])
    assert seen == {(2, 0), (2, 1), (2, 2)}  # every spare head of layer 2 gets drawn


def test_a_layer_short_of_spare_heads_borrows_from_the_nearest_layer_below_the_receiver():
    # Layer 1 has one spare head (L1H3) for two senders: the other comes from layer 0 or 2,
    # equally near; ties go to the lower layer, and with below=2 layer 2 is out anyway.
    pool = LayerMatched(n_layers=3, n_heads=4, excluded=frozenset({(1, 0), (1, 1), (1, 2)}))
    rng = np.random.default_rng(1)
    for below in (None, 2):
        image, off = pool.draw([(1, 0), (1, 1)], rng, below=below)
        assert off == 1
        layers = sorted(h[0] for h in image.values())
        assert layers == [0, 1] and (1, 3) in image.values()
    assert not LayerMatched(2, 2, frozenset()).feasible([(0, 0), (0, 1), (1, 0)], below=1)


def test_streams_are_per_name_and_reproducible():
    a = stream(0, "edge:x").integers(1 << 30, size=4)
    assert (a == stream(0, "edge:x").integers(1 << 30, size=4)).all()
    assert not (a == stream(0, "edge:y").integers(1 << 30, size=4)).all()
    assert not (a == stream(1, "edge:x").integers(1 << 30, size=4)).all()


def test_run_null_counts_extremes_and_takes_the_band():
    values = np.arange(100, dtype=float)  # 0..99
    calls = []

    def draw(k):
        calls.append(k)
        return values[:k], 0

    null = run_null(draw, 94.5, lambda x: x >= 94.5, MonteCarlo(n_min=100, n_max=100))
    assert calls == [100]
    assert null.n == 100 and null.extreme == 5  # 95..99
    assert null.p_value == 6 / 101
    assert null.low == pytest.approx(np.quantile(values, 0.025))
    assert null.high == pytest.approx(np.quantile(values, 0.975))
    assert null.fraction_beaten == pytest.approx(0.95)


def test_sequential_rule_stops_once_the_decision_is_settled():
    rule = MonteCarlo(n_min=100, n_max=1000, batch=100, alpha=0.05)
    # After 100 draws with 60 extreme, even 900 clean draws give p = 61/1001 > 0.05: stop.
    assert rule.decided(60, 100)
    # With 0 extreme, 900 more draws could all be extreme: not settled until
    # (1 + 0 + 1000 - n) / 1001 <= 0.05, i.e. 1001 - n <= 50.05, n >= 951.
    assert not rule.decided(0, 950) and rule.decided(0, 951)
    assert not rule.decided(0, 50)  # never before n_min
    stream_of = iter(np.ones(10_000))

    def draw(k):
        return np.array([next(stream_of) for _ in range(k)]), 0

    null = run_null(draw, 0.5, lambda x: x >= 0.5, rule)  # every draw extreme
    assert null.n == 100 and null.p_value == 1.0


def test_the_verdict_needs_the_interval_beyond_the_band_and_a_small_p():
    null = NullDraws(tuple(np.linspace(-0.1, 0.1, 99)), -0.5, 0, -0.095, 0.095)
    assert judge_with_null("verified", "", (-0.6, -0.2), null, "negative", 0.05)[0] == "verified"
    # The point clears the band but the interval reaches into it.
    assert judge_with_null("verified", "", (-0.6, -0.09), null, "negative", 0.05)[0] == "inconclusive"
    # "any": either side of the band.
    assert judge_with_null("verified", "", (0.2, 0.3), null, "any", 0.05)[0] == "verified"
    assert judge_with_null("verified", "", (0.2, 0.3), null, "negative", 0.05)[0] == "inconclusive"
    # A refuted edge stays refuted; a large p-value blocks verification.
    assert judge_with_null("refuted", "", (-0.6, -0.2), null, "negative", 0.05)[0] == "refuted"
    weak = NullDraws(null.values, -0.5, 30, -0.095, 0.095)
    assert judge_with_null("verified", "", (-0.6, -0.2), weak, "negative", 0.05)[0] == "inconclusive"


# --- on a tiny model ----------------------------------------------------------------------------


def _planted(src: Path, dst: Path, writers: set[tuple[int, int]]) -> Path:
    """The tiny Llama with every head's W_O zeroed except ``writers``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(src)
    cfg = model.config
    dh = cfg.hidden_size // cfg.num_attention_heads
    with torch.no_grad():
        for L, layer in enumerate(model.model.layers):
            for h in range(cfg.num_attention_heads):
                if (L, h) not in writers:
                    layer.self_attn.o_proj.weight[:, h * dh : (h + 1) * dh] = 0
    model.save_pretrained(dst)
    AutoTokenizer.from_pretrained(src).save_pretrained(dst)
    return dst


def _hypothesis(path: Path, model_dir: Path) -> Path:
    path.write_text(f"""name: planted
model: {model_dir}
task: {{kind: ioi, n_prompts: 8, seed: 0, corruption: abc}}
nodes:
  writers: {{role: name_mover, heads: [L1H0, L1H1]}}
  other: {{role: other, heads: [L2H3]}}
edges:
  - {{from: writers, to: logits, at: END, expect: {{sign: any, min_effect: 0.0}}}}
  - {{from: writers, to: other, via: q, at: END, expect: {{sign: any, min_effect: 0.0}}}}
""")
    return path


@pytest.fixture(scope="module")
def planted_dir(tiny_model_dirs, tmp_path_factory):
    return _planted(tiny_model_dirs["llama"], tmp_path_factory.mktemp("planted"), {(1, 0), (1, 1), (2, 3)})


def test_a_model_with_too_few_groups_uses_every_one_once(tmp_path, planted_dir, monkeypatch):
    from circuitspec.verification.context import RunContext

    swept: list[list[tuple[tuple[int, int], ...]]] = []
    sweep = RunContext.sweep

    def spy(self, senders, receiver, semantics=None):
        swept.append([s.heads for s in senders])
        return sweep(self, senders, receiver, semantics)

    monkeypatch.setattr(RunContext, "sweep", spy)
    # The tiny model's intervals are wide; force the interval verdict to see the null's own.
    monkeypatch.setattr("circuitspec.verification.edges.verdict", lambda ci, min_effect, sign, estimate=None: ("verified", "Forced."))
    result = cs.verify(_hypothesis(tmp_path / "h.yaml", planted_dir), scores=False, robustness=False,
                       n_bootstrap=200)
    # Hypothesis heads: L1H0, L1H1 (the sender), L2H3. Layer 1 has one spare pair (L1H2, L1H3),
    # so the null widens. Into the logits: the 9 spare heads of layers 0-2 make C(9, 2) = 36
    # groups, fewer than 100: all 36 are used, once each. Into L2H3: layers 0-1 only, 6 spare
    # heads, C(6, 2) = 15 groups, and 1/16 > 0.05: too small to verify anything.
    to_logits, to_other = result.edges
    spare = {(L, h) for L in range(3) for h in range(4)} - {(1, 0), (1, 1), (2, 3)}
    for edge, n, layers in ((to_logits, 36, (0, 1, 2)), (to_other, 15, (0, 1))):
        null = edge.null
        assert null is not None and null.kind == "layer_matched"
        assert null.n == null.n_distinct == n and null.widened is True and null.layers == layers
        # No random group writes anything, so no null effect reaches the real one's size.
        assert abs(edge.effect) > 1e-3
        assert null.p_value == pytest.approx(1 / (n + 1))
        assert max(abs(null.low), abs(null.high)) < 1e-4
        data = as_json(edge)["null"]
        assert {"n", "kind", "low", "high", "p_value", "widened", "layers", "n_distinct"} <= set(data)
    # Pairs with no layer-1 head: C(7, 2) = 21, two heads off their layer each; with one: 2 * 7 = 14.
    assert to_logits.null.off_layer == 21 * 2 + 14
    assert to_other.verdict == "inconclusive" and "null is too small" in to_other.reason
    null_sweeps = [g for g in swept if g and g[0] != ((1, 0), (1, 1))]
    assert len(null_sweeps) == 2
    for groups, n, top in zip(null_sweeps, (36, 15), (3, 2), strict=True):
        assert len(groups) == len(set(groups)) == n  # distinct: each group once
        assert all(set(g) <= spare and len(g) == 2 and max(L for L, _ in g) < top for g in groups)


def test_an_edge_without_a_null_is_not_verified(tmp_path, planted_dir, monkeypatch):
    # MLP0 into L1H0: the only MLP layer below the receiver is in the hypothesis, so no null.
    hyp = tmp_path / "h.yaml"
    hyp.write_text(f"""name: planted
model: {planted_dir}
task: {{kind: ioi, n_prompts: 8, seed: 0, corruption: abc}}
nodes:
  m: {{role: other, heads: [MLP0]}}
  r: {{role: name_mover, heads: [L1H0]}}
edges:
  - {{from: m, to: r, via: q, at: END, expect: {{sign: any, min_effect: 0.0}}}}
""")
    monkeypatch.setattr("circuitspec.verification.edges.verdict", lambda ci, min_effect, sign, estimate=None: ("verified", "Forced."))
    without = cs.verify(hyp, scores=False, robustness=False, n_bootstrap=200, n_null_edges=0).edges[0]
    assert without.verdict == "verified" and "not tested against a null" in without.reason
    edge = cs.verify(hyp, scores=False, robustness=False, n_bootstrap=200).edges[0]
    assert edge.null is None
    assert edge.verdict == "inconclusive" and "no null" in edge.reason and "MLP" in edge.reason


def _fake_null(setup, sender, receiver, value_of, real=0.0, sign="positive"):
    from circuitspec.scoring.edge_null import edge_null

    swept: list[tuple[tuple[int, int], ...]] = []

    def sweep(groups):
        swept.extend(g.heads for g in groups)
        return np.array([[value_of(g.heads)] * 3 for g in groups], dtype=float)

    # clean = 1, corrupt = 0: a group's effect is its patched value minus 1.
    null = edge_null("e", sender, receiver, real, sign, sweep, np.ones(3), np.zeros(3), setup)
    return null, swept


def test_a_layer_short_of_distinct_groups_widens_to_the_nearest_layers():
    from circuitspec.patching.types import Receiver, Sender
    from circuitspec.scoring.edge_null import EdgeNullSetup

    # 6 layers of 8 heads; the hypothesis takes L2H0-L2H5, leaving one spare pair in layer 2
    # for the 2-head sender: 1 distinct group. Nearest first (ties lower): layers 1 then 3.
    # Layers {1, 2}: 10 spare heads, C(10, 2) = 45 < 100; {1, 2, 3}: 18, C(18, 2) = 153.
    circuit = frozenset((2, h) for h in range(6))
    setup = EdgeNullSetup(6, 8, circuit, frozenset(), seed=0, rule=MonteCarlo(100, 100, 100))
    sender = Sender(heads=((2, 0), (2, 1)))
    for receiver, layers in ((Receiver(), (1, 2, 3)), (Receiver(heads=((3, 0),), via="q"), (0, 1, 2))):
        null, swept = _fake_null(setup, sender, receiver, lambda heads: 1.0)
        assert not isinstance(null, str)
        assert null.n == 100 and null.widened is True and null.layers == layers and null.n_distinct == 153
        assert len(swept) == len(set(swept)) == 100
        assert all(len(g) == 2 and {L for L, _ in g} <= set(layers) and not set(g) & circuit for g in swept)
        assert len({L for g in swept for L, _ in g}) == 3  # the widened layers are really drawn from
    # With enough spare heads in layer 2 (28 pairs of 8 >= 20 draws) the null stays in-layer.
    small = EdgeNullSetup(6, 8, frozenset(), frozenset(), seed=0, rule=MonteCarlo(20, 20, 20))
    null, swept = _fake_null(small, sender, Receiver(), lambda heads: 1.0)
    assert null.widened is False and null.layers == (2,) and null.n_distinct == 28 and null.off_layer == 0
    assert len(set(swept)) == 20 and all(L == 2 for g in swept for L, _ in g)


def test_a_whole_model_with_fewer_groups_than_draws_enumerates_them():
    from circuitspec.patching.types import Receiver, Sender
    from circuitspec.scoring.edge_null import EdgeNullSetup

    # 2 layers of 4 heads, sender L0H0+L0H1 into the logits, nothing else in the hypothesis:
    # 6 spare heads in all, C(6, 2) = 15 groups. A group's effect is its count of layer-1 heads;
    # the real effect 1.5 (positive) is reached by the C(4, 2) = 6 groups of two layer-1 heads.
    setup = EdgeNullSetup(2, 4, frozenset({(0, 0), (0, 1)}), frozenset(), seed=3, rule=MonteCarlo(100, 100, 100))
    null, swept = _fake_null(setup, Sender(heads=((0, 0), (0, 1))), Receiver(),
                             lambda heads: 1.0 + sum(L == 1 for L, _ in heads), real=1.5)
    assert not isinstance(null, str)
    assert null.n == 15 == len(set(swept)) and null.n_distinct == 15
    assert null.extreme == 6 and null.p_value == pytest.approx(7 / 16)
    # Even a huge effect cannot be verified: p >= 1/16 > 0.05.
    none_extreme = replace(null, extreme=0)
    word, reason = judge_with_null("verified", "", (5.0, 6.0), none_extreme, "positive", 0.05)
    assert word == "inconclusive" and "too small" in reason and "15" in reason


def test_no_null_makes_a_verified_edge_inconclusive():
    from circuitspec.patching.types import Receiver, Sender
    from circuitspec.scoring.edge_null import EdgeNullSetup, edge_null

    setup = EdgeNullSetup(2, 4, frozenset(), frozenset({0}), seed=0, rule=MonteCarlo(100, 100, 100))
    why = edge_null("e", Sender(mlps=(0,)), Receiver(heads=((1, 0),), via="q"), 1.0, "positive",
                    lambda groups: np.zeros((len(groups), 1)), np.ones(1), np.zeros(1), setup)
    assert isinstance(why, str) and "MLP" in why
    word, reason = judge_with_null("verified", "Big.", (0.5, 0.6), why, "positive", 0.05)
    assert word == "inconclusive" and why in reason
    assert judge_with_null("refuted", "x", (0.5, 0.6), why, "positive", 0.05) == ("refuted", "x")
    word, reason = judge_with_null("verified", "Big.", (0.5, 0.6), None, "positive", 0.05)
    assert word == "verified" and "not tested against a null" in reason


def test_non_finite_draws_count_as_extreme_and_are_reported():
    values = np.array([0.0] * 95 + [np.nan] * 3 + [np.inf, -np.inf])

    def draw(k):
        return values[:k], 0

    null = run_null(draw, 1.0, lambda x: x >= 1.0, MonteCarlo(n_min=100, n_max=100))
    # No finite draw reaches 1.0; the 5 non-finite ones count as extreme.
    assert null.n == 100 and null.extreme == 5 and null.nonfinite == 5
    assert null.p_value == pytest.approx(6 / 101)
    assert null.low == null.high == 0.0  # the band is of the finite draws
    assert as_json(null.summary())["nonfinite"] == 5


def test_a_real_value_that_is_not_finite_beats_no_draw():
    """A NaN real value (an effect 0/0 when M_clean = M_corrupt, a ratio 0/0) compares false
    with every draw, so no draw counted as extreme and the null said p = 1 / 101."""
    from circuitspec.scoring.circuit_null import _closer
    from circuitspec.scoring.nulls import more_extreme

    values = np.linspace(0.4, 0.6, 100)
    for real in (float("nan"), float("inf")):
        for extreme in (_closer(real), more_extreme(real, "negative"), more_extreme(real, None)):
            null = run_null(lambda k: (values[:k], 0), real, extreme, MonteCarlo(n_min=100, n_max=100))
            assert null.extreme == 100 and null.p_value == 1.0 and null.fraction_beaten == 0.0


# --- circuit-level nulls --------------------------------------------------------------------


def test_node_and_edge_level_nulls_use_layer_matched_circuits(tiny_models):
    from helpers.ioi_prompts import ioi_dataset

    from circuitspec.ablation.edge import Wire, edge_level_logit_diff
    from circuitspec.ablation.node import AblationRunner
    from circuitspec.scoring.circuit_null import (
        CircuitMaps,
        edge_null_distribution,
        null_distribution,
    )

    model = tiny_models["gpt2"]
    runner = AblationRunner(model, ioi_dataset(model.tokenizer, n=8), in_sample=True)
    heads = [(2, 0), (2, 1), (1, 3), (0, 2)]
    fm = float(runner.clean.double().mean())
    real = float(runner.logit_diff(heads).double().mean()) / fm
    maps = CircuitMaps(heads, 3, 4, seed=0)
    null = null_distribution(runner, maps, real=real, rule=MonteCarlo(n_min=100, n_max=100))
    assert null is not None and null.n == 100 and null.off_layer == 0
    values = np.array(null.values)
    for i in range(100):
        image = maps.get(i)[0]
        assert all(image[h][0] == h[0] and image[h] not in heads for h in heads)
        assert len(set(image.values())) == 4
    for i in (0, 1, 57):  # a few draws recomputed from their keep-sets
        keep = maps.get(i)[0].values()
        assert values[i] == pytest.approx(float(runner.logit_diff(keep).double().mean()) / fm, abs=1e-6)
    b = int(np.sum(np.abs(1 - values) <= abs(1 - real)))
    assert null.p_value == pytest.approx((1 + b) / 101)
    # The same seed draws the same circuits; the edge level maps the wires onto them.
    wires = [Wire(((0, 2),), ((1, 3),), "v"), Wire(((1, 3),), ((2, 0), (2, 1)), "q"), Wire(((2, 0), (2, 1)))]
    edge_real = float(edge_level_logit_diff(runner, wires).double().mean()) / fm
    edge = edge_null_distribution(runner, wires, CircuitMaps(heads, 3, 4, seed=0), real=edge_real,
                                  rule=MonteCarlo(n_min=3, n_max=3, batch=3))
    assert edge is not None and edge.n == 3
    for i in range(3):
        m = maps.get(i)[0]
        moved = [Wire(tuple(m[h] for h in w.senders), tuple(m[h] for h in w.receivers), w.via) for w in wires]
        expect = float(edge_level_logit_diff(runner, moved).double().mean()) / fm
        assert edge.values[i] == pytest.approx(expect, abs=1e-6)
    assert not CircuitMaps([(L, h) for L in range(3) for h in range(4)], 3, 4, 0).feasible


def test_verify_reports_both_circuit_nulls(tmp_path, planted_dir):
    hyp = _hypothesis(tmp_path / "h.yaml", planted_dir)
    hyp.write_text(hyp.read_text() + "claims:\n  faithfulness: {min: 0.8}\n")
    result = cs.verify(hyp, n_null_edges=0, robustness=False, n_bootstrap=200, n_subsets=2,
                       greedy_steps=1)
    data = result.to_json()["circuit"]
    node, edge = data["null"], data["null_edge_level"]
    assert node["kind"] == edge["kind"] == "layer_matched"
    assert node["n"] == 100 and edge["n"] == 20  # the defaults
    # Only the circuit's heads write: the circuit is the model (faithfulness 1), and every
    # random circuit (heads with W_O = 0) is as good as none, so none comes as close to 1.
    assert result.circuit.faithfulness.value == pytest.approx(1.0, abs=1e-5)
    assert node["p_value"] == pytest.approx(1 / 101) and node["fraction_beaten"] == 1.0
    assert data["faithfulness"]["details"]["null"]["n"] == 100
    assert data["faithfulness_edge_level"]["details"]["null"]["n"] == 20
    again = cs.Result.from_json(result.to_json())
    assert again.circuit.null_edge_level is not None and again.circuit.null_edge_level.n == 20


def test_a_circuit_that_does_not_beat_its_null_is_not_verified(tmp_path, planted_dir, monkeypatch):
    """Node-level faithfulness is exactly 1 (the circuit holds every writing head), inside its
    band; when every random circuit comes as close to 1, the null enters the verdict
    (inconclusive), it is not only reported beside it."""
    from circuitspec.scoring import scores
    from circuitspec.scoring.nulls import NullDraws

    hyp = _hypothesis(tmp_path / "h.yaml", planted_dir)
    hyp.write_text(hyp.read_text() + "claims:\n  faithfulness: {min: 0.8}\n  minimality: off\n")
    opts = {"n_null_edges": 0, "robustness": False, "n_bootstrap": 200, "n_subsets": 2, "greedy_steps": 1,
            "n_random": 20, "n_random_edge": 0, "ablation_level": "node"}
    fair = cs.verify(hyp, **opts).circuit.faithfulness
    assert fair.value == pytest.approx(1.0, abs=1e-5) and fair.verdict == "verified"
    monkeypatch.setattr(scores, "null_distribution",
                        lambda *a, real, **k: NullDraws((real,) * 20, real, 20, real, real))
    tied = cs.verify(hyp, **opts).circuit.faithfulness
    assert tied.value == pytest.approx(fair.value)
    assert tied.verdict == "inconclusive" and "not shown to beat chance" in tied.reason
