"""Edge-level circuit evaluation on tiny models, against a slow reference written here.

The reference runs one prompt and one receiver head at a time with plain hooks: for
each input slot it runs the model to the receiver's layer with every head's z set by
hand (circuit z along the slot's edges, ablated otherwise), then recomputes the head's
attention with its three inputs set, one head alone; the logits come from one more run.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.ablation_reference import (
    logit_diff_one,
    manual_template_means,
    reference,
    set_z,
)
from helpers.hypotheses import write_complete_hypothesis
from helpers.ioi_prompts import ioi_dataset

from circuitspec.ablation.edge import (
    Wire,
    complete_wires,
    edge_level_logit_diff,
    wires_from_circuit,
)
from circuitspec.ablation.mean_pool import build_mean_pool, pool_seed
from circuitspec.ablation.node import AblationRunner
from circuitspec.scoring.faithfulness import edge_faithfulness
from circuitspec.spec.circuit import Circuit, Edge, Node


@pytest.fixture(scope="module")
def datasets(tiny_models):
    return {fam: ioi_dataset(m.tokenizer, n=6, seed=2) for fam, m in tiny_models.items()}


# Two receivers in one key/value group of the Llama model ((2,0), (2,1)) read different k
# views; positions restrict two of the edges; (2,3) reads no edge, so its circuit z is the
# fully ablated run's (no pass) while its layer mates wait for the second pass.
WIRES = [
    Wire(((0, 2),), ((1, 0), (1, 3)), "q", ("END",)),
    Wire(((0, 1),), ((2, 0),), "k"),
    Wire(((1, 0), (0, 3)), ((2, 1),), "k", ("S2",)),
    Wire(((1, 3),), ((2, 0), (2, 1)), "v"),
    Wire(((2, 0), (2, 1), (1, 3), (2, 3))),
]


def test_heads_that_receive_no_edge_need_no_pass():
    from circuitspec.ablation.edge import _plan, _waves

    every = frozenset((L, h) for L in range(3) for h in range(4))
    passes, free = _waves(_plan(WIRES, every, ["S2", "END"]))
    assert free == [(0, 1), (0, 2), (0, 3), (2, 3)]  # their z: the fully ablated run's
    assert passes == [[(1, 0), (1, 3)], [(2, 0), (2, 1)]]


@pytest.mark.parametrize(("family", "kind"), [("llama", "mean"), ("gpt2", "resample"), ("neox", "zero")])
def test_matches_slow_reference(tiny_models, datasets, family, kind):
    model, ds = tiny_models[family], datasets[family]
    runner = AblationRunner(model, ds, kind, in_sample=True)
    got = edge_level_logit_diff(runner, WIRES)
    np.testing.assert_allclose(got.numpy(), reference(model, ds, WIRES, kind), atol=1e-4)
    full_passes = AblationRunner(model, ds, kind, resume=False, in_sample=True)
    torch.testing.assert_close(edge_level_logit_diff(full_passes, WIRES), got, atol=1e-5, rtol=0)
    # Teeth: the edge-level run differs from the clean run and from the fully ablated one.
    assert not np.allclose(got.numpy(), runner.clean.numpy(), atol=1e-2)
    assert not np.allclose(got.numpy(), runner.logit_diff(set()).numpy(), atol=1e-2)


@pytest.mark.parametrize(("family", "kind"), [("llama", "mean"), ("gemma3", "mean"), ("gpt2", "zero"),
                                            ("neox", "resample")])
def test_direct_blocks_match_the_hooked_bridge(tiny_models, tiny_gemma3, family, kind):
    """The runner's RowModel path (no attention in view copies, each wave head attending from
    its own views) against the bridge's hooked passes, on grouped keys and values (Gemma 3:
    one key/value head for four query heads, sandwich and q/k norms, local layers)."""
    model = tiny_gemma3 if family == "gemma3" else tiny_models[family]
    ds = ioi_dataset(model.tokenizer, n=6, seed=2)
    direct, hooked = AblationRunner(model, ds, kind, in_sample=True), AblationRunner(model, ds, kind, direct=False, in_sample=True)
    assert direct.rows is not None and hooked.rows is None
    for wires in (WIRES, [Wire(w.senders, w.receivers, w.via) for w in WIRES], []):
        got = edge_level_logit_diff(direct, wires)
        torch.testing.assert_close(got, edge_level_logit_diff(hooked, wires), atol=2e-5, rtol=0)
    np.testing.assert_allclose(edge_level_logit_diff(direct, WIRES).numpy(), reference(model, ds, WIRES, kind),
                               atol=1e-4)


def test_positions_matter_and_match_reference(tiny_models, datasets):
    model, ds = tiny_models["llama"], datasets["llama"]
    runner = AblationRunner(model, ds, "resample")
    everywhere = [Wire(w.senders, w.receivers, w.via) for w in WIRES]
    got = edge_level_logit_diff(runner, everywhere)
    np.testing.assert_allclose(got.numpy(), reference(model, ds, everywhere, "resample"), atol=1e-4)
    assert not np.allclose(got.numpy(), edge_level_logit_diff(runner, WIRES).numpy(), atol=1e-3)
    with pytest.raises(ValueError, match="unknown positions"):
        edge_level_logit_diff(runner, [Wire(((0, 1),), ((1, 1),), "q", ("S9",))])


@pytest.mark.parametrize("family", ["gpt2", "neox", "llama"])
def test_complete_graph_is_the_model_and_no_edges_the_ablated_model(tiny_models, datasets, family):
    model, ds = tiny_models[family], datasets[family]
    runner = AblationRunner(model, ds, "mean", in_sample=True)
    full = edge_level_logit_diff(runner, complete_wires(runner.all_heads))
    torch.testing.assert_close(full, runner.clean, atol=1e-5, rtol=0)
    score = edge_faithfulness(runner, complete_wires(runner.all_heads), threshold=0.8, n_bootstrap=1000)
    # The blocks are recomputed by RowModel, not the bridge that made runner.clean: float32
    # rounding in another order (the tiny models' logit differences are ~0.5, so 1e-5 there
    # is 2e-5 in F).
    assert score.value == pytest.approx(1.0, abs=1e-4)
    assert score.ci[0] == pytest.approx(1.0, abs=1e-4) and score.ci[1] == pytest.approx(1.0, abs=1e-4)
    assert score.details["mean_of_per_prompt_ratios"] == pytest.approx(1.0, abs=1e-4)
    assert score.verdict == "verified"
    # No edges: every head ablated, computed here by a naive loop over prompts.
    means = manual_template_means(model.bridge, ds)
    naive = [logit_diff_one(model.bridge, ds.clean[i], ds.positions["END"][i], ds.correct[i],
                             ds.incorrect[i], set_z(means[ds.template[i]])) for i in range(len(ds))]
    np.testing.assert_allclose(edge_level_logit_diff(runner, []).numpy(), naive, atol=1e-4)
    assert not np.allclose(naive, runner.clean.numpy(), atol=1e-2)


@pytest.mark.parametrize("kind", ["mean", "resample", "zero"])
def test_every_edge_among_circuit_heads_is_node_level(tiny_models, datasets, kind):
    model, ds = tiny_models["llama"], datasets["llama"]
    runner = AblationRunner(model, ds, kind, in_sample=True)
    circuit = [(0, 1), (1, 0), (1, 3), (2, 2)]
    node = runner.logit_diff(circuit)
    torch.testing.assert_close(edge_level_logit_diff(runner, complete_wires(circuit)), node,
                               atol=1e-5, rtol=0)
    # Dropping the circuit's k edges changes it: edge level is stricter than node level.
    fewer = [w for w in complete_wires(circuit) if w.via != "k"]
    assert not torch.allclose(edge_level_logit_diff(runner, fewer), node, atol=1e-3)


def test_wires_from_hypothesis_circuit(tiny_models, datasets):
    circuit = Circuit(
        nodes={"a": Node("a", "other", ((0, 1), (0, 3))), "b": Node("b", "other", ((1, 0),), (1,)),
               "c": Node("c", "name_mover", ((2, 0), (2, 1)))},
        edges=(Edge("a", "b", "k", "S2"), Edge("b", "c", "q", "END"), Edge("c", "logits", None, "END")),
    )
    all_pos = wires_from_circuit(circuit)
    assert all_pos == [Wire(((0, 1), (0, 3)), ((1, 0),), "k"), Wire(((1, 0),), ((2, 0), (2, 1)), "q"),
                       Wire(((2, 0), (2, 1)))]
    at = wires_from_circuit(circuit, at_positions=True)
    assert at[0].positions == ("S2",) and at[1].positions == ("END",) and at[2].positions is None
    model, ds = tiny_models["llama"], datasets["llama"]
    runner = AblationRunner(model, ds, "mean", in_sample=True)
    np.testing.assert_allclose(edge_level_logit_diff(runner, at).numpy(),
                               reference(model, ds, at, "mean"), atol=1e-4)
    score = edge_faithfulness(runner, at, threshold=0.5, n_bootstrap=1000, seed=3)
    fc = edge_level_logit_diff(runner, at).double().numpy()
    fm = runner.clean.double().numpy()
    assert score.value == pytest.approx(fc.mean() / fm.mean())
    assert score.details["mean_of_per_prompt_ratios"] == pytest.approx(np.mean(fc / fm))
    assert score.ci[0] <= score.value <= score.ci[1]
    assert score.verdict in ("verified", "refuted", "inconclusive")


def test_bad_wires_are_refused():
    with pytest.raises(ValueError, match="names via"):
        Wire(((0, 0),), ((1, 0),))
    with pytest.raises(ValueError, match="names via"):
        Wire(((0, 0),), (), "q")


def result_report(result):
    from circuitspec.output.report import render_markdown

    return render_markdown(result)


def test_verify_reports_edge_level_beside_node_level(tmp_path, tiny_model_dirs):
    import json

    import circuitspec as cs
    from circuitspec.results import Result

    hyp = write_complete_hypothesis(tmp_path / "complete.yaml", tiny_model_dirs["llama"])
    fast = {"n_random": 100, "n_random_edge": 0, "n_null_edges": 0, "n_bootstrap": 1000, "per_head": False}
    result = cs.verify(hyp, ablation_level="node", **fast)
    data = json.loads(result.dumps())
    circuit = data["circuit"]
    edge, node = circuit["faithfulness_edge_level"], circuit["faithfulness"]
    # The hypothesis is the complete graph: both levels are the model itself.
    for score in (edge, node):
        assert score["value"] == pytest.approx(1.0, abs=1e-5)
        assert score["ci"][0] == pytest.approx(1.0, abs=1e-5) and score["ci"][1] == pytest.approx(1.0, abs=1e-5)
        assert score["details"]["mean_of_per_prompt_ratios"] == pytest.approx(1.0, abs=1e-5)
        assert len(score["details"]["mean_of_per_prompt_ratios_ci"]) == 2
    assert edge["verdict"] is None and "judged at node level" in edge["reason"]
    assert data["settings"]["ablation_level"] == "node"
    # Every head is in the circuit: no head is left for a layer-matched random circuit.
    assert "null" not in circuit and "null" not in node["details"]
    # So the null asked for (n_random=100) was not drawn, and the claim, though its interval
    # [1, 1] is inside the band, has none to be judged against.
    assert node["verdict"] == "inconclusive" and "no null to be judged against: n_random=100" in node["reason"]
    assert "f_empty" in circuit and circuit["f_empty_ci"][0] <= circuit["f_empty"] <= circuit["f_empty_ci"][1]
    for key in ("f_model_ci", "f_circuit_ci"):
        assert len(node["details"][key]) == 2 and len(edge["details"][key]) == 2
    settings = [r["setting"] for r in data["robustness"]]
    for kind in ("mean", "resample", "zero"):
        assert f"edge level, {kind} ablation, ratio of means" in settings
        assert f"edge level, {kind} ablation, mean of per-prompt ratios" in settings
    rows = {r["setting"]: r["faithfulness"] for r in data["robustness"]}
    assert rows["edge level, zero ablation, ratio of means"] == pytest.approx(1.0, abs=1e-5)
    # The alternate corruption is re-measured, not copied: its own prompts (s_swap pairs them),
    # where the complete graph is again the model at both levels, each judged.
    swap = [r for r in data["robustness"] if r["setting"].startswith(("corruption=s_swap", "edge level, corruption"))]
    assert [r["setting"] for r in swap] == ["corruption=s_swap (10 prompts), mean ablation",
                                            "edge level, corruption=s_swap (10 prompts), mean ablation"]
    for row in swap:
        assert row["faithfulness"] == pytest.approx(1.0, abs=1e-5) and row["verdict"] == "verified"
    effects = swap[0]["edge_effects"]
    assert set(effects) == {e["from"] + "->" + e["to"] + ("" if e["via"] is None else "." + e["via"]) + "@" + e["at"]
                            for e in data["edges"]}
    assert effects != {e: x for r in data["robustness"] if r["setting"].startswith("path")
                       for e, x in r["edge_effects"].items()}
    assert "survives every choice" in result_report(result)
    assert Result.from_json(data).circuit.faithfulness_edge_level.value == pytest.approx(1.0, abs=1e-5)

    # Judged at edge level, asking for no edge-level null (none can be drawn here: see
    # tests/verification/test_verdicts.py for what asking for one does).
    judged = cs.verify(hyp, ablation_level="edge", robustness=False, **{**fast, "n_random_edge": 0})
    assert judged.circuit.faithfulness_edge_level.verdict == "verified"
    assert "asked for none (n_random_edge=0)" in judged.circuit.faithfulness_edge_level.reason
    assert judged.circuit.faithfulness.verdict is None
    assert "faithfulness_edge_level" in judged.circuit.scores()
    assert not [f for f in judged.failures() if f.what.startswith("claim")]


def test_circuit_positions_scope_reaches_both_levels(tmp_path, tiny_model_dirs, tiny_models):
    import circuitspec as cs
    from circuitspec.data.tasks import hypothesis_dataset
    from circuitspec.spec.load import load_hypothesis

    path = write_complete_hypothesis(tmp_path / "complete.yaml", tiny_model_dirs["llama"])
    path.write_text(path.read_text() + "ablation_scope: circuit_positions\n")
    result = cs.verify(path, model=tiny_models["llama"], n_random=0, n_null_edges=0, n_bootstrap=200,
                       per_head=False, robustness=False)
    assert result.settings.ablation_scope == "circuit_positions"
    hyp = load_hypothesis(path)
    model = tiny_models["llama"]
    ds = hypothesis_dataset(hyp, model.tokenizer, default_prepend_bos=model.info.default_prepend_bos)
    # verify's mean ablation takes its means from a separate pool (seeded from the run's seed).
    pool = build_mean_pool(model, ds, generate=True, seed=pool_seed(0))
    assert result.settings.mean_pool == pool.info()
    runner = AblationRunner(model, ds, "mean", mean_pool=pool)
    heads = sorted(hyp.circuit().heads())
    node = runner.logit_diff(heads, circuit_positions={h: ["END"] for h in heads}).double()
    fm = runner.clean.double()
    assert result.circuit.faithfulness.value == pytest.approx(float(node.mean() / fm.mean()), abs=1e-6)
    edge = edge_level_logit_diff(runner, wires_from_circuit(hyp.circuit(), at_positions=True)).double()
    assert result.circuit.faithfulness_edge_level.value == pytest.approx(float(edge.mean() / fm.mean()),
                                                                         abs=1e-6)
    assert result.circuit.faithfulness.value != pytest.approx(1.0, abs=1e-3)


