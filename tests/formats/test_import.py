"""`circuitspec import`: EAP-IG/MIB JSON and .pt, ACDC edges.pkl and auto-circuit files become
valid hypotheses, with every loss named; bad, foreign and malicious files exit 2."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import types
from pathlib import Path

import pytest
from helpers.cli import cli
from helpers.paths import ROOT

import circuitspec as cs
from circuitspec.errors import FormatError
from circuitspec.formats.convert import import_file
from circuitspec.spec.load import load_hypothesis

FAST = {"n_random": 5, "n_null_edges": 0, "n_bootstrap": 100, "robustness": False, "n_prompts": 8}


def eap_json(path: Path, edges: dict, n_layers=3, n_heads=4, d_model=32, **extra) -> Path:
    """An EAP-IG graph as Graph.to_json lays it out (cfg, nodes, edges)."""
    nodes = {"input": {"in_graph": True}}
    for layer in range(n_layers):
        nodes |= {f"a{layer}.h{h}": {"in_graph": False} for h in range(n_heads)}
        nodes[f"m{layer}"] = {"in_graph": False}
    nodes["logits"] = {"in_graph": True}
    cfg = {"n_layers": n_layers, "n_heads": n_heads, "parallel_attn_mlp": False, "d_model": d_model}
    path.write_text(json.dumps({"cfg": cfg, "nodes": nodes, "edges": edges, **extra}))
    return path


# A small circuit on a 3-layer, 4-head model: two heads to the logits, one S-inhibition-like
# q edge, one v edge, an MLP sender, plus an edge into an MLP and one from the input (dropped),
# and a low-scoring edge outside the circuit.
EDGES = {
    "a2.h1->logits": {"score": -0.9, "in_graph": True},
    "a2.h3->logits": {"score": 0.4, "in_graph": True},
    "a1.h0->a2.h1<q>": {"score": -0.5, "in_graph": True},
    "a0.h2->a1.h0<v>": {"score": -0.3, "in_graph": True},
    "m1->a2.h1<k>": {"score": 0.2, "in_graph": True},
    "a0.h2->m0": {"score": 0.1, "in_graph": True},
    "input->a0.h2<q>": {"score": 0.05, "in_graph": True},
    "a0.h1->a1.h3<k>": {"score": 0.01, "in_graph": False},
}


def edges_of(path: Path) -> set[tuple]:
    hyp = load_hypothesis(path)
    heads = {name: tuple(spec.heads) for name, spec in hyp.nodes.items()}
    return {(heads[e.sender], "logits" if e.receiver == "logits" else heads[e.receiver], e.via, e.at)
            for e in hyp.edges}


@pytest.fixture(scope="module")
def gpt2_dir(tiny_model_dirs):
    return tiny_model_dirs["gpt2"]


def test_eap_ig_json_imports_every_edge_and_names_each_loss(tmp_path, gpt2_dir):
    src = eap_json(tmp_path / "g.json", EDGES)
    out, notes = import_file(src, "eap-ig", str(gpt2_dir), tmp_path / "h.yaml")
    assert edges_of(out) == {
        (("L2H1",), "logits", None, "END"), (("L2H3",), "logits", None, "END"),
        (("L1H0",), ("L2H1",), "q", "END"), (("L0H2",), ("L1H0",), "v", "END"),
        (("MLP1",), ("L2H1",), "k", "END"),
    }
    text = "\n".join(n.line() for n in notes)
    assert "lost [1]: edges into MLPs dropped" in text
    assert "lost [1]: edges from the input embedding dropped" in text
    assert "no token positions" in text
    assert "assumed [3]: positions" in text  # the q, v and k edges between heads
    assert "kept [1]: edges from MLPs kept" in text
    assert "folded" not in text  # GPT-2 has no grouped-query attention
    # The account is written into the file, too.
    assert "edges into MLPs dropped" in out.read_text()


def test_imported_hypothesis_validates_and_verifies(tmp_path, gpt2_dir):
    src = eap_json(tmp_path / "g.json", EDGES)
    hyp = tmp_path / "h.yaml"
    run = cli("import", str(src), "--format", "eap-ig", "--model", str(gpt2_dir), "-o", str(hyp),
              "--n-prompts", "8")
    assert run.returncode == 0, run.stderr
    assert "edges into MLPs dropped" in run.stdout
    assert cli("validate", str(hyp)).returncode == 0
    result = cs.verify(hyp, **FAST)
    assert len(result.edges) == 5
    assert all(e.effect is not None for e in result.edges)


def test_top_k_and_threshold_rank_by_absolute_score(tmp_path, gpt2_dir):
    src = eap_json(tmp_path / "g.json", EDGES)
    out, _ = import_file(src, "eap-ig", str(gpt2_dir), tmp_path / "k.yaml", top_k=3)
    # |score| ranking: a2.h1->logits 0.9, a1.h0->a2.h1<q> 0.5, a2.h3->logits 0.4
    assert edges_of(out) == {(("L2H1",), "logits", None, "END"),
                             (("L1H0",), ("L2H1",), "q", "END"),
                             (("L2H3",), "logits", None, "END")}
    out, _ = import_file(src, "eap-ig", str(gpt2_dir), tmp_path / "t.yaml", threshold=0.25)
    assert len(edges_of(out)) == 4  # 0.9, 0.5, 0.4, 0.3
    with pytest.raises(FormatError, match="choose 1-8"):
        import_file(src, "eap-ig", str(gpt2_dir), tmp_path / "x.yaml", top_k=9)


def test_role_map_groups_heads_and_counts_the_pairs_grouping_adds(tmp_path, gpt2_dir):
    edges = {"a1.h0->a2.h1<q>": {"score": -0.5, "in_graph": True},
             "a1.h2->a2.h2<q>": {"score": -0.4, "in_graph": True},
             "a2.h1->logits": {"score": -0.9, "in_graph": True},
             "a2.h2->logits": {"score": -0.8, "in_graph": True}}
    src = eap_json(tmp_path / "g.json", edges)
    roles = tmp_path / "roles.yaml"
    # `at` is where a group reads its inputs, so it sits on the receiving group.
    roles.write_text("movers: {role: name_mover, heads: [L2H1, L2H2], at: {q: S2}}\n"
                     "inhib: {role: s_inhibition, heads: [L1H0, L1H2, L1H3]}\n")
    out, notes = import_file(src, "eap-ig", str(gpt2_dir), tmp_path / "h.yaml", roles=roles)
    assert edges_of(out) == {(("L2H1", "L2H2"), "logits", None, "END"),
                             (("L1H0", "L1H2"), ("L2H1", "L2H2"), "q", "S2")}
    hyp = load_hypothesis(out)
    assert hyp.nodes["movers"].role == "name_mover"
    text = "\n".join(n.line() for n in notes)
    # 4 head edges -> 2 group edges (2 merged); inhib->movers holds 2x2 pairs, the file had 2.
    assert "lost [2]: grouping merged head-level edges into 2 group edges" in text
    assert "adds 2 sender-receiver pairs" in text
    assert "role-map members not in the file's circuit left out: L1H3" in text


def test_group_by_layer_and_at_option(tmp_path, gpt2_dir):
    edges = {"a0.h1->a2.h1<k>": {"score": -0.5, "in_graph": True},
             "a0.h3->a2.h0<k>": {"score": -0.4, "in_graph": True},
             "a2.h0->logits": {"score": -0.4, "in_graph": True}}
    src = eap_json(tmp_path / "g.json", edges)
    out, _ = import_file(src, "eap-ig", str(gpt2_dir), tmp_path / "h.yaml", group_by="layer",
                         at="k=S2")
    assert edges_of(out) == {(("L0H1", "L0H3"), ("L2H0", "L2H1"), "k", "S2"),
                             (("L2H0", "L2H1"), "logits", None, "END")}


def test_gqa_k_v_edges_stay_on_their_query_head(tmp_path, tiny_model_dirs):
    edges = {"a0.h1->a1.h3<k>": {"score": -0.5, "in_graph": True},
             "a1.h3->logits": {"score": -0.4, "in_graph": True}}
    src = eap_json(tmp_path / "g.json", edges)
    out, notes = import_file(src, "eap-ig", str(tiny_model_dirs["llama"]), tmp_path / "h.yaml")
    assert (("L0H1",), ("L1H3",), "k", "END") in edges_of(out)
    assert any("4 query heads over 2 key/value heads" in n.what and "no edge is folded" in n.what
               for n in notes)


def mib_pt(path: Path, pairs: dict, n_layers=3, n_heads=4) -> Path:
    """A MIB .pt graph laid out by hand: forward nodes input, per layer a{L}.h*, m{L};
    backward nodes per layer q, k, v of each head, m{L}; then logits."""
    import torch

    src = ["input"] + [n for L in range(n_layers)
                       for n in [f"a{L}.h{h}" for h in range(n_heads)] + [f"m{L}"]]
    dst = [n for L in range(n_layers)
           for n in [f"a{L}.h{h}<{x}>" for x in "qkv" for h in range(n_heads)] + [f"m{L}"]]
    dst.append("logits")
    scores = torch.zeros(len(src), len(dst))
    member = torch.zeros(len(src), len(dst), dtype=torch.bool)
    for (s, d), (score, on) in pairs.items():
        scores[src.index(s), dst.index(d)] = score
        member[src.index(s), dst.index(d)] = on
    torch.save({"cfg": {"n_layers": n_layers, "n_heads": n_heads, "parallel_attn_mlp": False,
                        "d_model": 32},
                "src_nodes": src, "dst_nodes": dst, "edges_scores": scores,
                "edges_in_graph": member, "nodes_in_graph": member.any(dim=1)}, path)
    return path


def test_mib_pt_imports(tmp_path, gpt2_dir):
    src = mib_pt(tmp_path / "g.pt", {("a1.h2", "a2.h0<v>"): (-0.6, True),
                                     ("a2.h0", "logits"): (-1.0, True),
                                     ("a0.h0", "a1.h1<q>"): (0.9, False)})
    out, _ = import_file(src, "mib-pt", str(gpt2_dir), tmp_path / "h.yaml")
    assert edges_of(out) == {(("L1H2",), ("L2H0",), "v", "END"), (("L2H0",), "logits", None, "END")}
    out, _ = import_file(src, "mib-pt", str(gpt2_dir), tmp_path / "k.yaml", top_k=1)
    assert edges_of(out) == {(("L2H0",), "logits", None, "END")}


class _Index:
    """An independent stand-in for ACDC's TorchIndex, pickled as ACDC does."""

    def __init__(self, items):
        self.as_index = tuple(slice(None) if x is None else x for x in items)
        self.hashable_tuple = tuple(items)


def acdc_pickle(path: Path, edges: list) -> Path:
    """Pickle ``edges`` with _Index recorded as acdc.TLACDCEdge.TorchIndex."""
    package, module = types.ModuleType("acdc"), types.ModuleType("acdc.TLACDCEdge")
    module.TorchIndex = _Index
    package.TLACDCEdge = module
    old = _Index.__module__, _Index.__qualname__
    _Index.__module__, _Index.__qualname__ = "acdc.TLACDCEdge", "TorchIndex"
    sys.modules["acdc"], sys.modules["acdc.TLACDCEdge"] = package, module
    try:
        path.write_bytes(pickle.dumps(edges))
    finally:
        _Index.__module__, _Index.__qualname__ = old
        del sys.modules["acdc"], sys.modules["acdc.TLACDCEdge"]
    return path


def acdc_edges(n_layers=3) -> list:
    all_, head = _Index([None]), lambda h: _Index([None, None, h])
    return [
        ((f"blocks.{n_layers - 1}.hook_resid_post", all_, "blocks.2.attn.hook_result", head(1)), 1.2),
        (("blocks.2.hook_q_input", head(1), "blocks.1.attn.hook_result", head(3)), 0.4),
        (("blocks.2.attn.hook_q", head(1), "blocks.2.hook_q_input", head(1)), None),
        (("blocks.1.hook_k_input", head(3), "blocks.0.hook_mlp_out", all_), 0.3),
        (("blocks.1.attn.hook_k", head(3), "blocks.1.hook_k_input", head(3)), None),
        (("blocks.1.hook_mlp_in", all_, "blocks.0.hook_resid_pre", all_), 0.2),
        (("blocks.0.hook_v_input", head(0), "blocks.0.hook_resid_pre", all_), 0.1),
    ]


def test_acdc_pickle_imports_and_drops_direct_computation(tmp_path, gpt2_dir):
    src = acdc_pickle(tmp_path / "edges.pkl", acdc_edges())
    out, notes = import_file(src, "acdc", str(gpt2_dir), tmp_path / "h.yaml")
    assert edges_of(out) == {(("L2H1",), "logits", None, "END"), (("L1H3",), ("L2H1",), "q", "END"),
                             (("MLP0",), ("L1H3",), "k", "END")}
    text = "\n".join(n.line() for n in notes)
    assert "lost [2]: ACDC's direct-computation edges" in text
    assert "lost [1]: edges into MLPs dropped" in text
    assert "lost [1]: edges from the input embedding dropped" in text


def test_acdc_tensor_effect_sizes_as_acdc_pickles_them(tmp_path, gpt2_dir):
    """ACDC's metrics return 0-d tensors, so its effect sizes are pickled tensors."""
    import torch

    edges = [(key, None if effect is None else torch.tensor(effect)) for key, effect in acdc_edges()]
    src = acdc_pickle(tmp_path / "edges.pkl", edges)
    out, _ = import_file(src, "acdc", str(gpt2_dir), tmp_path / "h.yaml")
    assert (("L2H1",), "logits", None, "END") in edges_of(out)
    assert "acdc score 1.2" in out.read_text()


class _EvilStorage:
    """Abuses torch's storage hook: its bytes are a torch.save blob that runs a command."""

    def __reduce__(self):
        import io

        import torch

        buf = io.BytesIO()
        torch.save(_Evil(), buf)
        return (torch.storage._load_from_bytes, (buf.getvalue(),))


def test_pickle_smuggling_code_through_a_torch_storage_is_refused(tmp_path, gpt2_dir):
    bad = tmp_path / "edges.pkl"
    bad.write_bytes(pickle.dumps([_EvilStorage()]))
    out = tmp_path / "h.yaml"
    with pytest.raises(FormatError, match="not an ACDC edges.pkl"):
        import_file(bad, "acdc", str(gpt2_dir), out)
    assert not (ROOT / "pwned_marker").exists() and not (tmp_path / "pwned_marker").exists()
    assert not out.exists()


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch pwned_marker",))


def test_malicious_pickle_is_refused(tmp_path, gpt2_dir):
    bad = tmp_path / "edges.pkl"
    bad.write_bytes(pickle.dumps([_Evil()]))
    out = tmp_path / "h.yaml"
    run = subprocess.run([sys.executable, "-m", "circuitspec.cli", "import", str(bad), "--format",
                          "acdc", "--model", str(gpt2_dir), "-o", str(out)],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300,
                         env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 2
    assert str(bad) in run.stderr and "refused" in run.stderr and "system" in run.stderr
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "pwned_marker").exists()
    assert not out.exists()


def test_auto_circuit_forms(tmp_path, gpt2_dir):
    scores = tmp_path / "scores.json"
    scores.write_text(json.dumps({"A0.1->A2.3.Q": -0.4, "A2.3->Resid End": 0.8,
                                  "Resid Start->A1.1.K": 0.3, "MLP 0->MLP 1": 0.01}))
    with pytest.raises(FormatError, match="--top-k K or --threshold"):
        import_file(scores, "auto-circuit", str(gpt2_dir), tmp_path / "h.yaml")
    out, _ = import_file(scores, "auto-circuit", str(gpt2_dir), tmp_path / "h.yaml", top_k=2)
    assert edges_of(out) == {(("L0H1",), ("L2H3",), "q", "END"), (("L2H3",), "logits", None, "END")}
    present = tmp_path / "present.json"
    present.write_text(json.dumps({"A0.1->A2.3": [4, 6], "A2.3->Resid End": [6]}))
    out, notes = import_file(present, "auto-circuit", str(gpt2_dir), tmp_path / "p.yaml")
    assert edges_of(out) == {(("L0H1",), ("L2H3",), v, "END") for v in "qkv"} | {
        (("L2H3",), "logits", None, "END")}
    text = "\n".join(n.line() for n in notes)
    assert "seq_idx 4, 6" in text and "three edges, into q, k and v" in text
    records = tmp_path / "records.json"
    records.write_text(json.dumps([{"src": "A0.1", "dest": "A2.3.Q", "seq_idx": 5},
                                   {"src": "A2.3", "dest": "Resid End", "seq_idx": 6}]))
    out, _ = import_file(records, "auto-circuit", str(gpt2_dir), tmp_path / "r.yaml")
    assert edges_of(out) == {(("L0H1",), ("L2H3",), "q", "END"), (("L2H3",), "logits", None, "END")}


BAD_CASES = {
    "not_json.json": ("eap-ig", b"{not json", "not valid JSON"),
    "foreign.json": ("eap-ig", json.dumps({"hello": 1}).encode(), "not an EAP-IG graph"),
    "shape.json": ("eap-ig", None, "12 layers x 12 heads"),
    "bad_edge.json": ("eap-ig", json.dumps({"cfg": {"n_layers": 3, "n_heads": 4}, "nodes": {},
                                            "edges": {"a0.h1=>a2.h1": {"score": 1}}}).encode(),
                      "not an EAP-IG edge name"),
    "backward.json": ("eap-ig", json.dumps({"cfg": {"n_layers": 3, "n_heads": 4}, "nodes": {},
                                            "edges": {"a2.h1->a1.h1<q>": {"score": 1}}}).encode(),
                      "goes backward"),
    "json_as_acdc.pkl": ("acdc", json.dumps({"cfg": {}}).encode(), "not an ACDC edges.pkl"),
    "json_as_pt.pt": ("mib-pt", b"{}", "weights_only"),
    "range.json": ("auto-circuit", json.dumps({"A7.1->Resid End": 1.0}).encode(), "layers 0-2"),
}


@pytest.mark.parametrize("name", sorted(BAD_CASES))
def test_bad_and_foreign_files_exit_2_naming_the_file(tmp_path, gpt2_dir, name):
    fmt, content, expect = BAD_CASES[name]
    path = tmp_path / name
    if content is None:
        eap_json(path, {"a0.h0->logits": {"score": 1.0, "in_graph": True}}, n_layers=12,
                 n_heads=12, d_model=768)
    else:
        path.write_bytes(content)
    out = tmp_path / "h.yaml"
    with pytest.raises(FormatError) as info:
        import_file(path, fmt, str(gpt2_dir), out)
    assert str(path) in str(info.value) and expect in str(info.value), str(info.value)
    assert not out.exists()


def test_cli_bad_file_has_no_traceback_and_writes_nothing(tmp_path, gpt2_dir):
    path = tmp_path / "foreign.json"
    path.write_text("[1, 2]")
    out = tmp_path / "h.yaml"
    run = cli("import", str(path), "--format", "eap-ig", "--model", str(gpt2_dir), "-o", str(out))
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert str(path) in run.stderr and not out.exists()
    run = cli("import", str(path), "--format", "eap", "--model", str(gpt2_dir), "-o", str(out))
    assert run.returncode == 2 and "choose one of eap-ig, mib-pt, acdc, auto-circuit" in run.stderr
