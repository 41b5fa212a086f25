"""Edge discovery on a model whose circuit is planted by construction.

A 3-layer Llama in which only two heads write to the residual stream, A = (0,1) and
B = (1,2) (every other head's output projection and every MLP's down projection is
zero), and B's query weights are zero. Worked out by hand:

- B's queries are 0 whatever it reads, so its attention is uniform whatever its keys:
  edges into B's q or k change nothing; A reaches B through B's values only;
- heads that write nothing change nothing wherever they send;
- so the edges that matter are A -> logits, B -> logits and A -> B.v, and with all three
  the edge-level model equals the complete graph among the writers, which is the model:
  F = 1 (up to float error);
- a silent head in B's group, and a silent group, change F by exactly 0: pruning drops them.

The brute-force reference evaluates every candidate first edge with the slow, per-prompt
hook reference of tests/ablation/test_edge.py, not with the engine under test.
"""

from __future__ import annotations

import pytest
import torch
from helpers.ablation_reference import reference
from helpers.factories import save_tiny_model
from helpers.ioi_prompts import ioi_dataset

from circuitspec.ablation.edge import Wire
from circuitspec.ablation.node import AblationRunner
from circuitspec.analyses.grow import GrowEdge, candidates, grow_edges, prune
from circuitspec.analyses.grow_draft import grow_hypothesis
from circuitspec.bridge.loading import load_model
from circuitspec.patching.engine import select_engine
from circuitspec.spec.load import load_hypothesis

A, B = (0, 1), (1, 2)
SILENT_IN_B, SILENT = (1, 0), (2, 1)
PLANTED = {("a", "logits", None), ("b", "logits", None), ("a", "b", "v")}


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    from transformers import AutoModelForCausalLM

    path = save_tiny_model("llama", tmp_path_factory.mktemp("planted") / "llama", seed=5)
    model = AutoModelForCausalLM.from_pretrained(path)
    d_head = model.config.hidden_size // model.config.num_attention_heads
    with torch.no_grad():
        for i, layer in enumerate(model.model.layers):
            keep = torch.zeros_like(layer.self_attn.o_proj.weight)
            for wl, wh in (A, B):
                if wl == i:
                    cols = slice(wh * d_head, (wh + 1) * d_head)
                    keep[:, cols] = layer.self_attn.o_proj.weight[:, cols]
            layer.self_attn.o_proj.weight.copy_(keep)
            layer.mlp.down_proj.weight.zero_()
        model.model.layers[B[0]].self_attn.q_proj.weight[B[1] * d_head:(B[1] + 1) * d_head] = 0
    model.save_pretrained(path)
    loaded = load_model(str(path))
    ds = ioi_dataset(loaded.tokenizer, n=6, seed=2)
    return path, loaded, ds, AblationRunner(loaded, ds, "resample"), select_engine(loaded, ds)


GROUPS = {"a": ("other", [A]), "b": ("name_mover", [B, SILENT_IN_B]), "c": ("other", [SILENT])}


A_AND_B = "  a: {role: other, heads: [L0H1]}\n  b: {role: name_mover, heads: [L1H2]}\n"
B_TO_LOGITS = "  - {from: b, to: logits, at: END}\n"


def write_start(tmp_path, model, *, nodes: str = A_AND_B, edges: str = B_TO_LOGITS, n_prompts: int = 6,
                seed: int = 2, more: str = ""):
    """A hypothesis file to grow from: the planted model's groups (A's and B's writers by default)
    with B's edge into the logits."""
    start = tmp_path / "start.yaml"
    start.write_text(f"name: planted\nmodel: {model}\ntask: {{kind: ioi, n_prompts: {n_prompts}, seed: {seed}}}\n"
                     f"nodes:\n{nodes}edges:\n{edges}{more}")
    return start


def _key(e: GrowEdge) -> tuple[str, str, str | None]:
    return e.sender, e.receiver, e.via


def test_growth_recovers_the_planted_edges_and_stops(planted):
    _, _, _, runner, engine = planted
    result = grow_edges(runner, GROUPS, engine=engine, band=(0.999, 1.001), tolerance=1e-4, n_exact=4)
    assert {_key(s.edge) for s in result.steps} == PLANTED
    assert result.stop == "in band"
    assert result.faithfulness == pytest.approx(1.0, abs=1e-3)
    # Every step raised F; the steps' F is the curve.
    assert all(s.gain > 1e-4 for s in result.steps)
    # Pruning: the silent head leaves B's group, the silent group goes, the planted edges stay.
    assert result.groups["b"][1] == [B]
    assert "c" not in result.groups
    assert {_key(e) for e in result.edges} == PLANTED
    assert any("L1H0" in p for p in result.pruned) and any("group c" in p for p in result.pruned)


def test_growth_grows_only_edges_that_clear_the_edge_bar(planted):
    """An edge whose path-patching effect is below verify's edge bar would be refuted however much
    F needs it, so growth leaves it out: with the bar between A -> B.v's effect and the other
    planted edges', the wiring is among the other two and F stays out of the band (without
    A -> B.v, adding A -> logits takes F further from it: F 1.45 with no edges, 1.35 with
    B -> logits)."""
    _, _, _, runner, engine = planted
    full = grow_edges(runner, GROUPS, engine=engine, band=(0.999, 1.001), tolerance=1e-4, n_exact=4, min_effect=0)
    size = {_key(e): abs(v) for e, v in full.effects.items()}
    assert set(size) == PLANTED and min(size, key=size.__getitem__) == ("a", "b", "v")
    bar = (size[("a", "b", "v")] + min(v for k, v in size.items() if k != ("a", "b", "v"))) / 2
    result = grow_edges(runner, GROUPS, engine=engine, band=(0.999, 1.001), tolerance=1e-4, n_exact=4,
                        min_effect=bar)
    grown = {_key(e) for e in result.edges}
    assert ("b", "logits", None) in grown and grown <= PLANTED - {("a", "b", "v")}
    assert all(abs(v) >= bar for v in result.effects.values())
    assert result.stop == "no edge gains more than the tolerance" and abs(result.faithfulness - 1) > 1e-2



def test_a_grown_draft_takes_the_edge_bar_of_the_file_it_starts_from(planted, tmp_path):
    """`suggest --from FILE --grow-edges` screens against FILE's own edge bar, unless told."""
    path, loaded, ds, runner, engine = planted
    full = grow_edges(runner, {"a": ("other", [A]), "b": ("name_mover", [B])}, engine=engine,
                      band=(0.999, 1.001), tolerance=1e-4, min_effect=0)
    size = {_key(e): abs(v) for e, v in full.effects.items()}
    bar = (size[("a", "b", "v")] + min(v for k, v in size.items() if k != ("a", "b", "v"))) / 2
    start = write_start(tmp_path, path, more=f"claims:\n  edges: {{min_effect: {bar}}}\n")
    grow = {"ablation": "resample", "band": (0.999, 1.001), "tolerance": 1e-4}
    out, grown = grow_hypothesis(loaded, ds, tmp_path / "g.yaml", model_ref=str(path), seed=2, start=start, **grow)
    assert ("a", "b", "v") not in {_key(e) for e in grown.edges} and f"clears {bar}" in out.read_text()
    _, told = grow_hypothesis(loaded, ds, tmp_path / "h.yaml", model_ref=str(path), seed=2, start=start,
                              min_effect=0.0, **grow)
    assert ("a", "b", "v") in {_key(e) for e in told.edges}


def test_growth_stops_when_no_edge_helps(planted):
    _, _, _, runner, engine = planted
    groups = {"b": ("name_mover", [B]), "c": ("other", [SILENT])}
    result = grow_edges(runner, groups, engine=engine, band=(0.999, 1.001), tolerance=1e-4)
    # Only B -> logits can change F: nothing writes into B from c (a later layer), c is silent.
    assert [_key(s.edge) for s in result.steps] == [("b", "logits", None)]
    assert result.stop == "no edge gains more than the tolerance"


def test_pruning_drops_an_edge_that_changes_nothing(planted):
    _, _, _, runner, _ = planted
    groups = {"a": ("other", [A]), "b": ("name_mover", [B])}
    edges = [GrowEdge("b", "logits"), GrowEdge("a", "b", "v", "S2"), GrowEdge("a", "b", "q", "END")]

    def ev(g, e):
        from circuitspec.analyses.grow import _Evaluator

        return _Evaluator(runner, False)(g, e)

    notes: list[str] = []
    prune(ev, groups, edges, (0.8, 1.2), 1e-4, notes)
    assert [_key(e) for e in edges] == [("b", "logits", None), ("a", "b", "v")]  # q into B is a no-op
    assert len(notes) == 1 and "b.q" in notes[0]


def test_pruning_keeps_a_head_its_edges_need_to_clear_the_edge_bar():
    """Pruning judges a head by F, but a head's removal also changes its group's edges' effects
    (on SmolLM2, dropping L29H0 moved the negative movers' edge into the logits from +0.349 to
    +0.152 while F moved by 0.001): a head whose removal takes an edge below the bar stays."""
    groups = {"g": ("other", [(0, 1), (0, 2)])}
    edges = [GrowEdge("g", "logits")]
    asked: list[list[str]] = []

    def clears(g, es):  # without L0H1 the edge's effect would fall below the bar
        asked.append([e.name for e in es])
        return (0, 1) in g["g"][1]

    notes: list[str] = []
    prune(lambda g, e: 1.0 if e else 0.0, groups, edges, (0.8, 1.2), 0.01, notes, clears=clears)
    assert groups["g"][1] == [(0, 1)] and edges == [GrowEdge("g", "logits")]
    assert len(notes) == 1 and notes[0].startswith("head L0H2 of g")
    assert asked == [["g->logits@END"]] * 2  # each head's trial asked about its group's edges


def test_first_edge_matches_brute_force_with_the_slow_reference(planted):
    _, loaded, ds, runner, engine = planted
    band = (0.8, 1.2)
    clean = float(runner.clean.double().mean())
    best, best_d = None, None
    for c in candidates(GROUPS, [], ["END"], False) + [
            GrowEdge(s, r, via, "END") for s in GROUPS for r in GROUPS for via in ("q", "k", "v")]:
        senders = tuple(GROUPS[c.sender][1])
        wire = Wire(senders) if c.receiver == "logits" else Wire(senders, tuple(GROUPS[c.receiver][1]), c.via)
        f = sum(reference(loaded, ds, [wire], "resample")) / len(ds) / clean
        d = max(band[0] - f, f - band[1], 0.0)
        if best_d is None or d < best_d - 1e-9:
            best, best_d = c, d
    result = grow_edges(runner, GROUPS, engine=engine, band=band, tolerance=1e-4, max_edges=1, n_exact=2)
    assert best is not None and _key(result.steps[0].edge) == _key(best)


def test_grown_draft_validates_and_records_its_evidence(planted, tmp_path):
    path, loaded, ds, _, _ = planted
    hyp_path = write_start(tmp_path, path, nodes=A_AND_B.replace("[L1H2]", "[L1H2, L1H0]"))
    out, result = grow_hypothesis(loaded, ds, tmp_path / "grown.yaml", model_ref=str(path), seed=2,
                                  start=hyp_path, ablation="resample", band=(0.999, 1.001), tolerance=1e-4)
    hyp = load_hypothesis(out)
    assert {(e.sender, e.receiver, e.via) for e in hyp.edges} == PLANTED
    assert hyp.nodes["b"].heads == ["L1H2"]
    text = out.read_text()
    assert "step 1: +" in text and "pruned head L1H0" in text and "discovery:" in text
    assert f"n_prompts': {len(ds)}" in text or "n_prompts: 6" in text
    # The prompts were drawn from every template: the templates they happen to use are not a
    # restriction (rebuilding with them names other prompts, so verify's held-out check missed
    # the real discovery prompts).
    assert hyp.discovery is not None and hyp.discovery.templates is None
    assert hyp.discovery.seed == 2 and hyp.discovery.n_prompts == len(ds)


def test_candidates_are_edges_a_hypothesis_file_accepts():
    """Every receiver head after every sender head, no self edges, only into groups on a path."""
    groups = {"early": ("other", [(0, 1)]), "mixed": ("other", [(0, 2), (2, 0)]), "mid": ("other", [(1, 2)]),
              "late": ("name_mover", [(2, 3)])}
    found = candidates(groups, [], ["END", "S2"], False)
    assert {(c.sender, c.receiver) for c in found} == {(g, "logits") for g in groups}  # nothing needed yet
    found = candidates(groups, [GrowEdge("late", "logits"), GrowEdge("mid", "late", "q", "END")], ["END", "S2"],
                       False)
    into = {(c.sender, c.receiver) for c in found if c.receiver != "logits"}
    # mixed (a layer-2 head) cannot feed mid (layer 1) nor late (layer 2); late cannot feed itself.
    assert into == {("early", "mid"), ("early", "late"), ("mid", "late")}
    # mid -> late.q is taken (at any position, since positions do not matter at this scope).
    assert not [c for c in found if (c.sender, c.receiver, c.via) == ("mid", "late", "q")]
    assert len([c for c in found if (c.sender, c.receiver) == ("early", "mid")]) == 6  # 3 vias x 2 positions


def test_grown_draft_names_the_prompts_it_was_grown_on(planted, tmp_path):
    """discovery: regenerates exactly the prompts the edges were grown on, also when they were
    drawn from a list of templates (it used to write the ids the prompts happened to use,
    which make the generator draw other prompts, so verify checked disjointness from the wrong set)."""
    from circuitspec.data.tasks import build_dataset
    from circuitspec.spec.schema import TaskSpec

    path, loaded, _, _, _ = planted
    drawn = TaskSpec(kind="ioi", corruption="abc", templates=[3, 7, 12, 20, 25])
    ds = build_dataset(drawn, loaded.tokenizer, prepend_bos=False, n_prompts=6, seed=4)
    assert len(set(ds.template)) < 5  # some listed templates unused: the old record differed
    start = write_start(tmp_path, path, nodes='  b: {role: name_mover, heads: [L1H2]}\n')
    out, _ = grow_hypothesis(loaded, ds, tmp_path / "grown.yaml", model_ref=str(path), seed=4, start=start,
                             ablation="resample", max_edges=1)
    d = load_hypothesis(out).discovery
    assert (d.seed, d.n_prompts, d.corruption, d.templates) == (4, 6, "abc", [3, 7, 12, 20, 25])
    again = build_dataset(TaskSpec(kind="ioi", corruption=d.corruption, templates=d.templates),
                          loaded.tokenizer, prepend_bos=False, n_prompts=d.n_prompts, seed=d.seed)
    assert again.clean == ds.clean and again.corrupt == ds.corrupt


def test_grown_faithfulness_is_the_one_verify_gives_on_the_same_prompts(planted, tmp_path):
    """With mean ablation, growth scores F over the separate mean pool verify uses, so the F a
    draft records is the edge-level F `verify` gives it on the discovery prompts. It used to take
    the means from the scored prompts' own corrupted partners (an in-sample mean): on Gemma-3-270M
    a grown 4-edge wiring recorded F 0.937 where verify, on the same 32 prompts, gave 1.227.
    One edge only, so that F depends on what the ablated heads are replaced by."""
    import circuitspec as cs
    from circuitspec.data.tasks import build_dataset
    from circuitspec.spec.schema import TaskSpec

    path, loaded, _, _, _ = planted
    ds = build_dataset(TaskSpec(kind="ioi", corruption="abc"), loaded.tokenizer, prepend_bos=False,
                       n_prompts=8, seed=3)
    start = write_start(tmp_path, path, n_prompts=8, seed=3)
    out, grown = grow_hypothesis(loaded, ds, tmp_path / "grown.yaml", model_ref=str(path), seed=3,
                                 start=start, ablation="mean", band=(0.999, 1.001), max_edges=1,
                                 tolerance=1e-4, prune_after=False, progress=False)
    assert "means from a separate pool, seed" in out.read_text()
    assert abs(grown.faithfulness - 1) > 0.01  # F depends on the means
    result = cs.verify(out, loaded, in_sample=True, n_prompts=8, seed=3, n_random=0, n_random_edge=0,
                       n_null_edges=0, n_bootstrap=100, robustness=False, per_head=False)
    assert result.circuit is not None and result.settings.ablation == "mean" and result.held_out is False
    assert result.circuit.faithfulness_edge_level.value == pytest.approx(grown.faithfulness, abs=1e-5)


def test_grown_draft_expects_the_sign_path_patching_shows(planted, tmp_path):
    """Each grown edge is written with the sign of its path-patching effect on the discovery
    prompts (``expect: {sign}`` where it differs from the default), so verify tests the sign the
    evidence shows (the Gemma-3 file's inhibitory edge into the negative name movers' queries
    was written without it, and verify refuted its +1.104 for the default's sign). The effects
    are recomputed with the slow reference of tests/helpers/reference_patching.py."""
    from helpers.reference_patching import _ld, _tokens, reference_patch

    path, loaded, ds, _, _ = planted
    start = write_start(tmp_path, path)
    out, grown = grow_hypothesis(loaded, ds, tmp_path / "grown.yaml", model_ref=str(path), seed=2, start=start,
                                 ablation="resample", band=(0.999, 1.001), tolerance=1e-4)
    hyp = load_hypothesis(out)
    circuit = hyp.circuit()
    parts = [ds.subset(g) for g in ds.length_groups()]  # the reference wants one length

    def mean(values: list[torch.Tensor]) -> float:
        return float(torch.cat(values).double().mean())

    with torch.no_grad():
        clean = mean([_ld(loaded.bridge(_tokens(p, "clean")), p) for p in parts])
        corrupt = mean([_ld(loaded.bridge(_tokens(p, "corrupt")), p) for p in parts])
    signs = {}
    for e in circuit.edges:
        receivers = "logits" if e.receiver == "logits" else list(circuit.nodes[e.receiver].heads)
        patched = mean([reference_patch(loaded, p, list(circuit.nodes[e.sender].heads), receivers, e.via, e.at)
                        for p in parts])
        effect = (patched - clean) / (clean - corrupt)
        assert abs(effect - grown.effects[next(g for g in grown.edges if g.sender == e.sender
                                               and g.receiver == e.receiver and g.via == e.via)]) < 1e-4
        signs[(e.sender, e.receiver, e.via)] = (e.sign, "positive" if effect > 0 else "negative")
    assert signs.keys() == PLANTED
    assert all(written == shown for written, shown in signs.values()), signs
    # Both signs occur here, so the test sees an `expect` written and one left to the default.
    assert {shown for _, shown in signs.values()} == {"positive", "negative"}, signs
    assert "expect: {sign: positive}" in out.read_text()
    assert "node-level F of these groups" in out.read_text()


def test_growth_can_start_from_the_files_edges_and_prunes_them_like_the_rest(planted, tmp_path):
    """--keep-edges: growth starts from the --from file's edges (a researcher's known paths)
    instead of none; a starting edge that changes nothing (into B's queries, which are zero)
    is pruned like a grown one, and the curve starts at the starting edges."""
    path, loaded, ds, _, _ = planted
    start = write_start(tmp_path, path, edges=B_TO_LOGITS + "  - {from: a, to: b, via: q, at: END}\n")
    out, grown = grow_hypothesis(loaded, ds, tmp_path / "g.yaml", model_ref=str(path), seed=2, start=start,
                                 keep_edges=True, ablation="resample", band=(0.999, 1.001), tolerance=1e-4,
                                 min_effect=0)
    assert grown.seeded is not None and grown.seeded[0] == 2
    assert {_key(e) for e in grown.edges} == PLANTED
    assert any("a->b.q" in p for p in grown.pruned)
    text = out.read_text()
    assert "F with the 2 starting edges" in text and "step 1: +" in text
    from_none, plain = grow_hypothesis(loaded, ds, tmp_path / "h.yaml", model_ref=str(path), seed=2, start=start,
                                       ablation="resample", band=(0.999, 1.001), tolerance=1e-4, min_effect=0)
    assert plain.seeded is None and "starting edges" not in from_none.read_text()
