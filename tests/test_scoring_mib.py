"""MIB's edge-level faithfulness (circuitspec.scoring.mib) against an independent reference."""

from __future__ import annotations

import random

import pytest
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
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    fixture = root / "tests" / "fixtures" / "formats" / "tiny_gpt2_eap_ig.json"
    run = subprocess.run([sys.executable, "-m", "circuitspec.cli", "mib-score", str(fixture),
                          "--format", "eap-ig", "--model", str(tiny_model_dirs["gpt2"]),
                          "--n-prompts", "4", "--seed", "5"],
                         capture_output=True, text=True, cwd=root, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "7 edges on 4 IOI prompts" in run.stdout
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
