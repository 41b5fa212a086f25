"""`circuitspec curve`: MIB's faithfulness curve, CPR and CMD, with intervals and a baseline."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers.paths import ROOT
from helpers.reference_mib import reference_metric

from circuitspec.data.ioi import build_ioi
from circuitspec.formats import eap_ig
from circuitspec.scoring.curve import MIB_SIZES, area, curve, interval, normalised, prune
from circuitspec.scoring.mib import all_edges

FIXTURE = ROOT / "tests" / "fixtures" / "formats" / "tiny_gpt2_eap_ig.json"


def test_prune_follows_eap_ig():
    edges = [("L0H1", "L1H0", "q"),   # L0H1 has no incoming edge, but its only parent could be
             ("input", "L0H1", "q"),  # the input: kept
             ("L1H0", "logits", None),
             ("L0H2", "L1H3", "k"),   # L0H2 has no incoming edge and is not the input: dropped,
             ("L1H3", "logits", None),  # and with it L1H3 loses its only incoming edge
             ("input", "L2H0", "v")]  # L2H0 has no outgoing edge: dropped
    assert prune(edges) == edges[:3]


def test_areas_are_mibs_trapezoids():
    cpr, cmd = area((0.1, 0.5, 1.0), (0.0, 0.5, 1.0))
    assert cpr == pytest.approx(0.4 * 0.25 + 0.5 * 0.75)
    assert cmd == pytest.approx(0.4 * 0.75 + 0.5 * 0.25)


def test_curve_on_tiny_gpt2_matches_the_reference(tiny_models):
    model = tiny_models["gpt2"]
    data = build_ioi(model.tokenizer, n_prompts=6, seed=2, corruption="abc",
                     prepend_bos=model.info.default_prepend_bos)
    graph = eap_ig.read(FIXTURE)
    curves = {c.ranking: c for c in curve(model, data, graph.edges, n_random=1, n_bootstrap=200)}
    assert set(curves) == {"signed", "absolute", "random-0"}
    universe = all_edges(model.info, parallel=False)
    assert len(universe) == 262  # 216 head inputs + 30 MLP inputs (non-parallel) + 16 into logits
    c = curves["absolute"]
    # int(size * 262): 0, 0, 1, 2, 5, 13, 26, 52, 131, 262 edges before pruning
    assert c.faithfulness[0] == pytest.approx(0.0, abs=1e-6)
    assert c.faithfulness[-1] == pytest.approx(1.0, abs=1e-6)
    assert c.n_edges[-1] == 262
    # At 2 % (5 edges): the five largest |scores| of the file, pruned by hand: a2.h1->logits,
    # a1.h0->a2.h1<q>, a2.h3->logits, a0.h2->a1.h0<v>, m0->a1.h0<k>; m0 has no incoming edge
    # among them, so its edge goes; a2.h3 keeps its edge to the logits but receives nothing,
    # so it goes too; a0.h2 also receives nothing; then a1.h0 and a2.h1 follow.
    assert c.n_edges[MIB_SIZES.index(0.02)] == 0
    # At 5 % (13 edges): the 7 in-circuit edges, the 0.01 edge, then 5 zero-score edges in the
    # model's order (input->a0.h0 q/k/v, input->a0.h1 q/k)
    hf = __import__("transformers").AutoModelForCausalLM.from_pretrained(model.source).eval()
    scored = [("L2H1", "logits", None), ("L1H0", "L2H1", "q"), ("L2H3", "logits", None),
              ("L0H2", "L1H0", "v"), ("MLP0", "L1H0", "k"), ("L0H2", "MLP0", None),
              ("input", "L0H2", "q"), ("L0H1", "L1H3", "k"),
              ("input", "L0H0", "q"), ("input", "L0H0", "k"), ("input", "L0H0", "v"),
              ("input", "L0H1", "q"), ("input", "L0H1", "k")]
    kept = prune(scored)
    assert c.n_edges[MIB_SIZES.index(0.05)] == len(kept)
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    m_c, m_0, m_m = (mean(reference_metric(hf, data, e)) for e in (kept, [], universe))
    assert c.faithfulness[MIB_SIZES.index(0.05)] == pytest.approx((m_c - m_0) / (m_m - m_0), abs=1e-4)
    assert (c.cpr, c.cmd) == pytest.approx(area(MIB_SIZES, c.faithfulness))
    lo, hi = c.cpr_ci
    assert lo <= c.cpr <= hi
    assert all(lo <= f <= hi for f, (lo, hi) in zip(c.faithfulness, c.faithfulness_ci, strict=True))


def test_curve_command_writes_json_and_plot(tmp_path, tiny_model_dirs):
    run = subprocess.run([sys.executable, "-m", "circuitspec.cli", "curve", str(FIXTURE),
                          "--format", "eap-ig", "--model", str(tiny_model_dirs["gpt2"]),
                          "--n-prompts", "4", "--n-random", "1", "--n-bootstrap", "50",
                          "--corruption", "s_swap", "--out", str(tmp_path)], capture_output=True,
                         text=True, cwd=ROOT,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    assert "absolute: CPR" in run.stdout and "random-0: CPR" in run.stdout
    data = json.loads((tmp_path / "curve.json").read_text())
    assert [c["ranking"] for c in data["curves"]] == ["signed", "absolute", "random-0"]
    assert data["corruption"] == "s_swap"  # MIB's default IOI counterfactual (s2_io_flip)
    assert data["random_baseline"]["n"] == 1
    assert data["random_baseline"]["cpr_mean"] == pytest.approx(data["curves"][2]["cpr"])
    assert data["curves"][0]["sizes"] == list(MIB_SIZES)
    assert (tmp_path / "curve.png").stat().st_size > 1000


def test_a_resample_without_a_gap_is_counted_not_a_crash():
    """m(M) = m(empty) on a resample (here prompts 0 and 2 only) leaves faithfulness undefined:
    NaN there, left out of the interval (and counted by curve), not a ZeroDivisionError."""
    empty, full = [0.0, 1.0, 2.0], [2.0, 3.0, 0.0]  # means over {0, 2}: 1.0 and 1.0
    per = [[1.0, 2.0, 1.0]]
    assert normalised(per, empty, full, [0, 1, 2]) == [pytest.approx((4 / 3 - 1) / (5 / 3 - 1))]
    assert all(x != x for x in normalised(per, empty, full, [0, 2]))  # NaN
    assert interval([float("nan"), 0.2, 0.4, 0.3], 0.5) == (0.2, 0.3)
    lo, hi = interval([float("nan")], 0.9)
    assert lo != lo and hi != hi
