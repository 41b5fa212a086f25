"""`circuitspec export` and round trips: export then import gives the same heads and edges,
minus what the format cannot hold, which the tool names."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import types
from pathlib import Path

import pytest
from helpers.paths import ROOT

import circuitspec as cs
from circuitspec.formats.convert import export_file, import_file
from circuitspec.formats.graph import FORMATS
from circuitspec.spec.load import load_hypothesis

SHIPPED = ROOT / "hypotheses" / "ioi_smollm2_135m.yaml"
EXT = {"eap-ig": ".json", "mib-pt": ".pt", "acdc": ".pkl", "auto-circuit": ".json"}
FAST = {"n_random": 5, "n_null_edges": 0, "n_bootstrap": 100, "robustness": False, "n_prompts": 8}


def group_edges(path: Path, with_at: bool = True) -> set[tuple]:
    """(sender heads, receiver heads, via, at) per hypothesis edge."""
    hyp = load_hypothesis(path)
    heads = {n: tuple(sorted(s.heads)) for n, s in hyp.nodes.items()}
    return {(heads[e.sender], "logits" if e.receiver == "logits" else heads[e.receiver], e.via,
             e.at if with_at else None) for e in hyp.edges}


def head_pairs(path: Path) -> set[tuple]:
    """Every (sender member, receiving head, via) a hypothesis' edges join, independently of
    how the heads are grouped."""
    hyp = load_hypothesis(path)
    return {(s, r, e.via) for e in hyp.edges for s in hyp.nodes[e.sender].heads
            for r in (["logits"] if e.receiver == "logits" else hyp.nodes[e.receiver].heads)}


@pytest.mark.parametrize("fmt", FORMATS)
def test_shipped_hypothesis_round_trips(tmp_path, fmt):
    out = tmp_path / f"circuit{EXT[fmt]}"
    _, notes = export_file(SHIPPED, fmt, out)
    text = "\n".join(n.line() for n in notes)
    assert "a hypothesis file has no measured effects" in text
    # 9 head-to-head group edges' worth of pairs are at S2, S1+1 or END: positions are named.
    assert "has no named positions" in text and "at S1+1" in text and "at S2" in text
    # Per-head import: the same head pairs; positions come back as END (named on import).
    back = tmp_path / "back.yaml"
    _, notes = import_file(out, fmt, "smollm2-135m-instruct", back, in_graph=True)
    assert head_pairs(back) == head_pairs(SHIPPED)
    assert any(n.kind == "assumed" and "positions" in n.what for n in notes)
    # With the hypothesis as the role map: the same groups, edges and positions.
    again = tmp_path / "again.yaml"
    import_file(out, fmt, "smollm2-135m-instruct", again, in_graph=True, roles=SHIPPED)
    assert group_edges(again) == group_edges(SHIPPED)
    assert {n: s.role for n, s in load_hypothesis(again).nodes.items()} == {
        n: s.role for n, s in load_hypothesis(SHIPPED).nodes.items()}


def write_tiny(path: Path, model_dir: Path, nodes: str, edges: str) -> Path:
    path.write_text(f"name: tiny\nmodel: {model_dir}\n"
                    "task: {kind: ioi, n_prompts: 8, seed: 0, corruption: abc}\n"
                    f"nodes:\n{nodes}edges:\n{edges}")
    return path


ALL_HEADS = ", ".join(f"L{layer}H{h}" for layer in range(3) for h in range(4))
# Every head patched jointly gives exactly the corrupted run at END (effect -1, verified, as in
# tests/cli/test_verify.py); MLP1 cannot move the metric 1000 gaps, so its edge is refuted and, exported,
# out of the circuit.
TINY_NODES = (f"  movers: {{role: name_mover, heads: [{ALL_HEADS}]}}\n"
              "  mlp: {role: other, heads: [MLP1]}\n")
TINY_EDGES = ("  - {from: movers, to: logits, at: END, expect: {sign: negative, min_effect: 0.5}}\n"
              "  - {from: mlp, to: logits, at: END, expect: {sign: any, min_effect: 1000}}\n")
TINY = {"gpt2": (TINY_NODES, TINY_EDGES), "llama": (TINY_NODES, TINY_EDGES)}


@pytest.fixture(scope="module")
def tiny_results(tiny_model_dirs, tmp_path_factory):
    """results.json of one verify run per tiny model (GPT-2 and Llama with GQA)."""
    out = {}
    for family, (nodes, edges) in TINY.items():
        folder = tmp_path_factory.mktemp(family)
        hyp = write_tiny(folder / "h.yaml", tiny_model_dirs[family], nodes, edges)
        result = cs.verify(hyp, **FAST)
        assert [e.verdict for e in result.edges] == ["verified", "refuted"]
        out[family] = (hyp, result.save(folder / "results.json"), result)
    return out


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("family", sorted(TINY))
def test_results_round_trip_keeps_verified_edges_and_measured_effects(tmp_path, tiny_results,
                                                                      tiny_model_dirs, family, fmt):
    hyp, results, result = tiny_results[family]
    out = tmp_path / f"c{EXT[fmt]}"
    if (family, fmt) == ("gpt2", "eap-ig"):  # once through the command line, as a user runs it
        run = subprocess.run([sys.executable, "-m", "circuitspec.cli", "export", str(results),
                              "--format", fmt, "-o", str(out)], capture_output=True, text=True,
                             cwd=ROOT, timeout=300)
        assert run.returncode == 0, run.stderr
        printed = run.stdout
    else:
        printed = "\n".join(n.line() for n in export_file(results, fmt, out)[1])
    assert "scores = measured effects" in printed and "verdict is verified" in printed
    back = tmp_path / "back.yaml"
    import_file(out, fmt, str(tiny_model_dirs[family]), back, roles=hyp)
    # in_graph = verified: only the first edge comes back, with its groups and position.
    assert group_edges(back) == {(tuple(sorted(load_hypothesis(hyp).nodes["movers"].heads)),
                                  "logits", None, "END")}
    # Every score is the sender head's own measured effect along the edge.
    # (A sender measured alone has its own effect; one without falls back to the group's.)
    own = {(e.sender, h): e.effect for e in result.edges
           for h in load_hypothesis(hyp).nodes[e.sender].heads}
    own |= {(e.sender, h.head): h.effect for e in result.edges for h in e.per_head}
    for (src, dst, via), score in exported_scores(out, fmt).items():
        group = "mlp" if src.startswith("MLP") else "movers"
        assert score == pytest.approx(own[(group, src)], abs=1e-6), (src, dst, via)


def exported_scores(path: Path, fmt: str) -> dict[tuple, float]:
    """(src, dst, via) -> score, read back from the file by hand, per each format's layout."""
    out = {}
    if fmt == "eap-ig":
        data = json.loads(path.read_text())
        for name, info in data["edges"].items():
            src, rest = name.split("->")
            dst, _, via = rest.partition("<")
            out[(_eap(src), _eap(dst), via.rstrip(">") or None)] = info["score"]
    elif fmt == "mib-pt":
        import torch

        data = torch.load(path, weights_only=True)
        for i, j in data["edges_in_graph"].nonzero().tolist() + (
                (data["edges_scores"] != 0) & ~data["edges_in_graph"]).nonzero().tolist():
            dst, _, via = data["dst_nodes"][j].partition("<")
            out[(_eap(data["src_nodes"][i]), _eap(dst), via.rstrip(">") or None)] = float(
                data["edges_scores"][i, j])
    elif fmt == "acdc":
        for (child, cidx, parent, pidx), effect in _plain_unpickle(path):
            if child.endswith("hook_resid_post"):
                dst, via = "logits", None
            elif "_input" in child:
                dst, via = f"L{child.split('.')[1]}H{cidx.hashable_tuple[2]}", child[-7]
            else:
                continue  # direct-computation edge inside a head
            layer = parent.split(".")[1]
            src = f"MLP{layer}" if parent.endswith("mlp_out") else f"L{layer}H{pidx.hashable_tuple[2]}"
            out[(src, dst, via)] = effect
    else:
        for rec in json.loads(path.read_text())["edges"]:
            src, dst = rec["name"].split("->")
            if dst == "Resid End":
                key = (_ac(src), "logits", None)
            else:
                layer, head, letter = dst[1:].split(".")
                key = (_ac(src), f"L{layer}H{head}", letter.lower())
            out[key] = rec["score"]
    return out


def _eap(name: str) -> str:
    if name.startswith("m"):
        return f"MLP{name[1:]}"
    if name.startswith("a"):
        layer, head = name[1:].split(".h")
        return f"L{layer}H{head}"
    return name


def _ac(name: str) -> str:
    if name.startswith("MLP "):
        return f"MLP{name[4:]}"
    layer, head = name[1:].split(".")
    return f"L{layer}H{head}"


class _Index:
    pass


def _plain_unpickle(path: Path) -> list:
    """Load an edges.pkl as ACDC itself would: plain pickle, its own TorchIndex class."""
    package, module = types.ModuleType("acdc"), types.ModuleType("acdc.TLACDCEdge")
    module.TorchIndex = _Index
    package.TLACDCEdge = module
    sys.modules["acdc"], sys.modules["acdc.TLACDCEdge"] = package, module
    try:
        return pickle.loads(path.read_bytes())
    finally:
        del sys.modules["acdc"], sys.modules["acdc.TLACDCEdge"]


def test_mib_pt_export_follows_the_matrix_layout(tmp_path):
    out = tmp_path / "c.pt"
    export_file(SHIPPED, "mib-pt", out)
    import torch

    data = torch.load(out, weights_only=True)
    n_layers, n_heads = 30, 9
    assert data["edges_scores"].shape == (1 + n_layers * (n_heads + 1), n_layers * (3 * n_heads + 1) + 1)
    # L20H0 -> L23H3 via q: forward index 1 + 20*10 + 0, backward 23*28 + 0*9 + 3.
    assert data["edges_in_graph"][1 + 20 * 10 + 0, 23 * 28 + 3]
    # L17H4 -> L20H0 via v: backward 20*28 + 2*9 + 0.
    assert data["edges_in_graph"][1 + 17 * 10 + 4, 20 * 28 + 18]
    # L23H3 -> logits: the last column.
    assert data["edges_in_graph"][1 + 23 * 10 + 3, -1]
    # The shipped hypothesis (the re-grown wiring) joins, edge by edge, 1 + 4 (to logits)
    # + 4*4 (duplicate k) + 2*4 (s_inhibition q) + 2*4 (induction k) into the name movers
    # + 2*2 (induction v) + 4*2 (duplicate v) into s_inhibition + 1*2 (previous k) into
    # induction = 51 head pairs.
    assert int(data["edges_in_graph"].sum()) == 51


def test_export_errors_exit_2(tmp_path):
    run = subprocess.run([sys.executable, "-m", "circuitspec.cli", "export", str(tmp_path / "no.json"),
                          "--format", "acdc", "-o", str(tmp_path / "x.pkl")],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert run.returncode == 2 and "no such file" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "x.pkl").exists()


GQA_NODES = ("  movers: {role: name_mover, heads: [L2H1, L2H3]}\n"
             "  induction: {role: induction, heads: [L1H0, L1H3]}\n"
             "  previous: {role: previous_token, heads: [L0H2, MLP0]}\n")
GQA_EDGES = ("  - {from: movers, to: logits, at: END}\n"
             "  - {from: induction, to: movers, via: k, at: S2}\n"
             "  - {from: previous, to: induction, via: v, at: S1+1}\n")


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_tiny_hypothesis_round_trips(tmp_path, tiny_model_dirs, family, fmt):
    """k/v edges into single query heads on a GQA model, and an MLP sender, survive each format."""
    hyp = write_tiny(tmp_path / "h.yaml", tiny_model_dirs[family], GQA_NODES, GQA_EDGES)
    out = tmp_path / f"c{EXT[fmt]}"
    export_file(hyp, fmt, out)
    back = tmp_path / "back.yaml"
    _, notes = import_file(out, fmt, str(tiny_model_dirs[family]), back)
    assert head_pairs(back) == head_pairs(hyp)
    again = tmp_path / "again.yaml"
    import_file(out, fmt, str(tiny_model_dirs[family]), again, roles=hyp)
    assert group_edges(again) == group_edges(hyp)
    folded = [n for n in notes if "folded" in n.what]
    assert bool(folded) == (family == "llama")


def test_a_graph_mib_hypothesis_exports_its_input_edges(tmp_path, tiny_model_dirs):
    """`from: input` (graph: mib) is EAP-IG's input node; it used to crash export (KeyError)."""
    hyp = write_tiny(tmp_path / "h.yaml", tiny_model_dirs["gpt2"],
                     "  late: {role: name_mover, heads: [L2H1, L2H3]}\n",
                     "  - {from: late, to: logits, at: END}\n"
                     "  - {from: input, to: late, via: q, at: END}\n")
    hyp.write_text(hyp.read_text() + "graph: mib\n")
    out = tmp_path / "c.json"
    export_file(hyp, "eap-ig", out)
    edges = json.loads(out.read_text())["edges"]
    assert sorted(edges) == ["a2.h1->logits", "a2.h3->logits", "input->a2.h1<q>", "input->a2.h3<q>"]
