"""MIB's edge-level faithfulness (circuitspec.scoring.mib) against an independent reference."""

from __future__ import annotations

import random

import pytest
from helpers.hypotheses import MIB_HYPOTHESIS
from helpers.paths import FIXTURES, ROOT
from helpers.reference_mib import reference_metric

from circuitspec.data.ioi import build_ioi
from circuitspec.scoring.mib import all_edges, mib_faithfulness, mib_metric


@pytest.fixture(scope="module")
def gpt2(tiny_models):
    model = tiny_models["gpt2"]
    data = build_ioi(model.tokenizer, n_prompts=6, seed=3, corruption="abc",
                     prepend_bos=model.info.default_prepend_bos)
    return model, data


def _hf(model):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model.source).eval()


@pytest.mark.parametrize("fraction, seed", [(0.0, 0), (1.0, 0), (0.3, 1), (0.7, 2), (0.05, 3)])
def test_matches_the_reference_on_tiny_gpt2(gpt2, fraction, seed):
    model, data = gpt2
    edges = all_edges(model.info, parallel=False)
    rng = random.Random(seed)
    circuit = [e for e in edges if rng.random() < fraction]
    # input and MLP edges are graph edges here: the random circuits cut some of each
    if 0 < fraction < 1:
        assert any(e[0] == "input" for e in circuit) and any(e[1].startswith("MLP") for e in circuit)
    got = mib_metric(model, data, circuit)
    want = reference_metric(_hf(model), data, circuit)
    assert got == pytest.approx(want, abs=1e-5)


def test_faithfulness_is_mibs_ratio(gpt2):
    model, data = gpt2
    edges = all_edges(model.info, parallel=False)
    circuit = [e for e in edges if e[1] == "logits" or e[0] == "input"]
    score = mib_faithfulness(model, data, circuit)
    hf = _hf(model)
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    m_c, m_0, m_m = (mean(reference_metric(hf, data, c)) for c in (circuit, [], edges))
    assert (score.circuit, score.empty, score.model) == (
        pytest.approx(m_c, abs=1e-5), pytest.approx(m_0, abs=1e-5), pytest.approx(m_m, abs=1e-5))
    # the ratio divides 1e-5 metric agreement by the clean-corrupt gap (about 0.3 here)
    tol = 3e-5 / abs(m_m - m_0)
    assert score.faithfulness == pytest.approx((m_c - m_0) / (m_m - m_0), abs=tol)
    assert 0 < score.faithfulness < 1  # logits and input edges alone: part of the way


def test_gqa_is_scored_on_an_ungrouped_copy_that_computes_the_same(tiny_models):
    import torch

    from circuitspec.scoring.ungroup import ungrouped

    model = tiny_models["llama"]  # 4 query heads over 2 key/value heads
    copy = ungrouped(model)
    assert copy.info.n_kv_heads == 4 and ungrouped(model) is copy  # made once
    data = build_ioi(model.tokenizer, n_prompts=3, seed=0, corruption="abc",
                     prepend_bos=model.info.default_prepend_bos)
    tokens = torch.tensor([data.clean[0]])
    with torch.no_grad():
        assert torch.allclose(model.bridge(tokens), copy.bridge(tokens), atol=1e-5)
    edges = all_edges(model.info, parallel=False)
    clean, corrupt = (mib_metric(model, data, edges), mib_metric(model, data, []))
    with torch.no_grad():
        for i in range(len(data)):
            for toks, got in ((data.clean[i], clean[i]), (data.corrupt[i], corrupt[i])):
                end = model.bridge(torch.tensor([toks]))[0, data.positions["END"][i]]
                assert got == pytest.approx(float(end[data.correct[i]] - end[data.incorrect[i]]),
                                            abs=1e-5)
    # Cutting input -> L1H0's k alone (its key/value head also serves L1H1) is its own circuit.
    one = mib_metric(model, data, [e for e in edges if e != ("input", "L1H0", "k")])
    both = mib_metric(model, data, [e for e in edges if e not in (("input", "L1H0", "k"),
                                                                  ("input", "L1H1", "k"))])
    assert one != pytest.approx(both, abs=1e-6) and one != pytest.approx(clean, abs=1e-6)


def test_mib_score_command_on_a_fixture(tiny_model_dirs, tiny_models):
    """`circuitspec mib-score` on the hand-written tiny GPT-2 EAP-IG file: the file's edges
    (MLP and input edges included) scored as the reference scores them."""
    import subprocess
    import sys

    fixture = FIXTURES / "tiny_gpt2_eap_ig.json"
    run = subprocess.run([sys.executable, "-m", "circuitspec.cli", "mib-score", str(fixture),
                          "--format", "eap-ig", "--model", str(tiny_model_dirs["gpt2"]),
                          "--n-prompts", "4", "--seed", "5"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert run.returncode == 0, run.stderr
    # EAP-IG prunes L2H3 -> logits (L2H3 receives nothing); under patching that cannot change
    # the metric, so the reference below scores all seven and must agree
    assert "6 edges (7 chosen, pruned as EAP-IG prunes) on 4 IOI prompts" in run.stdout
    printed = float(run.stdout.strip().split("= ")[-1])
    model = tiny_models["gpt2"]
    data = build_ioi(model.tokenizer, n_prompts=4, seed=5, corruption="abc",
                     prepend_bos=model.info.default_prepend_bos)
    circuit = [("L2H1", "logits", None), ("L2H3", "logits", None), ("L1H0", "L2H1", "q"),
               ("L0H2", "L1H0", "v"), ("MLP0", "L1H0", "k"), ("L0H2", "MLP0", None),
               ("input", "L0H2", "q")]
    hf = _hf(model)
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    m_c, m_0, m_m = (mean(reference_metric(hf, data, c))
                     for c in (circuit, [], all_edges(model.info, parallel=False)))
    assert printed == pytest.approx((m_c - m_0) / (m_m - m_0), abs=1e-3)  # printed to 4 places


def _node_patched(model, data, hook, head):
    """Per-prompt END logit difference of the clean run with one node's output swapped for
    its output on the corrupted prompt, by the model's own forward pass: whatever follows
    the node (Gemma's post-attention norm included) is applied by the model, not by us."""
    import torch

    out: list[float] = []
    saved = {}

    def keep(x, hook):
        saved["x"] = x.clone()
        return x

    def swap(x, hook):
        if head is None:
            return saved["x"]
        x = x.clone()
        x[:, :, head] = saved["x"][:, :, head]
        return x

    with torch.no_grad():
        for i in range(len(data)):
            model.bridge.run_with_hooks(torch.tensor([data.corrupt[i]]), fwd_hooks=[(hook, keep)])
            logits = model.bridge.run_with_hooks(torch.tensor([data.clean[i]]), fwd_hooks=[(hook, swap)])
            end = logits[0, data.positions["END"][i]]
            out.append(float(end[data.correct[i]] - end[data.incorrect[i]]))
    return out


@pytest.mark.parametrize("family", ["gpt2", "neox", "llama", "gemma3"])
def test_cutting_a_nodes_every_outgoing_edge_is_patching_that_node(family, tiny_models, tiny_gemma3):
    """With every edge out of a node cut, each receiver reads that node's corrupted output and
    every other parent's clean one: the clean run with the node itself patched. On Gemma 3
    a head's output passes the post-attention norm together with its layer's other heads,
    so cutting one head's edges must renormalise the layer's sum (as EAP-IG does), not add
    the head's raw difference."""
    model = tiny_gemma3 if family == "gemma3" else tiny_models[family]
    data = build_ioi(model.tokenizer, n_prompts=3, seed=0, corruption="abc",
                     prepend_bos=model.info.default_prepend_bos)
    parallel = bool(getattr(model.bridge.cfg, "parallel_attn_mlp", False))
    edges = all_edges(model.info, parallel)
    for node, hook, head in (("input", "hook_embed", None), ("L0H1", "blocks.0.attn.hook_result", 1),
                             ("L1H0", "blocks.1.attn.hook_result", 0), ("MLP0", "blocks.0.hook_mlp_out", None)):
        got = mib_metric(model, data, [e for e in edges if e[0] != node])
        assert got == pytest.approx(_node_patched(model, data, hook, head), abs=1e-5), node


def test_graph_mib_in_a_hypothesis_scores_its_edges_mibs_way(tmp_path, tiny_model_dirs, gpt2):
    """`graph: mib` in a hypothesis: verify adds circuit.faithfulness_mib, the file's edges
    (input and MLP edges included) scored on MIB's graph, as the independent reference scores
    the edge list written out here by hand."""
    import circuitspec as cs

    model, data = gpt2  # the same prompts: ioi, 6 prompts, seed 3, abc
    path = tmp_path / "h.yaml"
    path.write_text(MIB_HYPOTHESIS.format(model=tiny_model_dirs["gpt2"], graph="graph: mib\n"))
    result = cs.verify(str(path), model=model, quick=True, n_bootstrap=200, n_null_edges=0)
    assert result.metric.per_prompt["clean"] == pytest.approx(
        reference_metric(_hf(model), data, all_edges(model.info, parallel=False)), abs=1e-5)
    circuit = [("input", "L0H2", "q"), ("input", "MLP0", None),
               ("L0H2", "L2H1", "v"), ("L0H2", "L2H3", "v"), ("MLP0", "L2H1", "v"), ("MLP0", "L2H3", "v"),
               ("L2H1", "logits", None), ("L2H3", "logits", None)]
    hf = _hf(model)
    want = {k: reference_metric(hf, data, c) for k, c in
            (("circuit", circuit), ("empty", []), ("model", all_edges(model.info, parallel=False)))}
    mib = result.circuit.faithfulness_mib
    for key, values in want.items():
        assert mib.per_prompt[key] == pytest.approx(values, abs=1e-5), key
    mean = {k: sum(v) / len(v) for k, v in want.items()}
    ratio = (mean["circuit"] - mean["empty"]) / (mean["model"] - mean["empty"])
    assert mib.value == pytest.approx(ratio, abs=3e-5 / abs(mean["model"] - mean["empty"]))
    assert mib.details["n_edges"] == len(circuit) and mib.details["band"] == [0.05, pytest.approx(1.95)]
    assert mib.ci[0] <= mib.value <= mib.ci[1] and mib.verdict in ("verified", "refuted", "inconclusive")
    # judged, so it enters the verdict; written to results.json and read back
    assert "faithfulness_mib" in result.circuit.scores()
    assert result.work["mib_graph"] == pytest.approx(6.0)  # three evaluations, two passes each
    back = cs.Result.from_json(result.to_json()).circuit.faithfulness_mib
    assert back.value == pytest.approx(mib.value) and back.per_prompt["empty"] == mib.per_prompt["empty"]
    # the path-patched edges are the group edges only: input is a graph edge for MIB's score
    assert [e.sender for e in result.edges] == ["early", "late"]

    path.write_text(MIB_HYPOTHESIS.format(model=tiny_model_dirs["gpt2"], graph="").replace(
        "  - {from: input, to: early, via: q, at: END}\n", ""))
    plain = cs.verify(str(path), model=model, quick=True, n_bootstrap=200, n_null_edges=0)
    assert plain.circuit.faithfulness_mib is None and "faithfulness_mib" not in plain.to_json()["circuit"]
