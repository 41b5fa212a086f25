"""Every score split by prompt order and template, recomputed by hand from per-prompt values."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from helpers.sample_result import sample_result

from circuitspec.output.report import render_markdown
from circuitspec.results import Result, RobustnessRow
from circuitspec.scoring.breakdown import breakdown, order_of

# Six prompts: templates 0 and 3 are BABA, 15 and 18 their ABBA mirrors.
TEMPLATES = [0, 0, 3, 15, 15, 18]
CLEAN = [3.0, 4.0, 5.0, 2.0, 2.0, 2.0]
CORRUPT = [0.0, 0.0, 1.0, 0.0, 0.0, 0.0]
PATCHED = [1.0, 2.0, 3.0, 1.0, 1.0, 1.0]
FC, FM = [2.0, 3.0, 4.0, 3.0, 3.0, 3.0], [3.0, 4.0, 5.0, 2.0, 2.0, 2.0]


def split_result() -> Result:
    r = sample_result()
    metric = replace(r.metric, per_prompt={"clean": CLEAN, "corrupt": CORRUPT, "template": TEMPLATES})
    edges = (replace(r.edges[0], per_prompt=tuple(PATCHED)),) + r.edges[1:]
    circuit = replace(r.circuit, faithfulness=replace(r.circuit.faithfulness,
                                                      per_prompt={"circuit": FC, "model": FM}))
    return replace(r, metric=metric, edges=edges, circuit=circuit)


def test_orders_and_templates_recompute_by_hand():
    assert [order_of(t) for t in TEMPLATES] == ["BABA"] * 3 + ["ABBA"] * 3
    split = breakdown(split_result(), n_boot=200)
    edge = split["by_order"][f"edge {split_result().edges[0].name}"]
    # BABA: patched 2, clean 4, corrupt 1/3 -> (2 - 4) / (4 - 1/3) = -6/11; ABBA: (1 - 2) / 2 = -0.5.
    assert edge["BABA"]["value"] == pytest.approx(-6 / 11) and edge["BABA"]["n"] == 3
    assert edge["ABBA"]["value"] == pytest.approx(-0.5) and edge["ABBA"]["n"] == 3
    faith = split["by_order"]["faithfulness (node level)"]
    # BABA 9/12 = 0.75; ABBA 9/6 = 1.5: a pooled 18/18 = 1 hides both.
    assert faith["BABA"]["value"] == pytest.approx(0.75) and faith["ABBA"]["value"] == pytest.approx(1.5)
    per_template = split["by_template"]["faithfulness (node level)"]
    assert per_template["0"]["value"] == pytest.approx(5 / 7) and per_template["3"]["ci"] is None
    assert set(per_template) == {"0", "3", "15", "18"}
    lo, hi = faith["BABA"]["ci"]
    assert lo <= 0.75 <= hi
    # No per-prompt values (the other edges): not split.
    assert f"edge {split_result().edges[1].name}" not in split["by_order"]


def test_breakdown_round_trips_and_is_reported():
    r = replace(split_result(), breakdown=breakdown(split_result(), n_boot=200),
                robustness=(RobustnessRow("mean ablation, ratio of means", 1.0, {}, (0.9, 1.1), "verified"),
                            RobustnessRow("corruption=s_swap (6 prompts), mean ablation", 0.5, {}, (0.4, 0.6),
                                          "refuted")))
    again = Result.from_json(json.loads(r.dumps()))
    assert again.breakdown == json.loads(json.dumps(r.breakdown))
    md = render_markdown(r)
    assert "By prompt order and template" in md and "0.750" in md and "1.500" in md
    assert "holds under 1 of 2 settings" in md and "corruption=s_swap (6 prompts), mean ablation (refuted)" in md


def test_orders_resample_templates_when_the_run_did():
    """The run's own by_order (details.by_order) resamples templates as clusters; breakdown's
    by_order resampled prompts, treating the prompts of one template as independent, so the
    two tables gave different intervals for the same subset (the prompt one narrower)."""
    import numpy as np

    from circuitspec.scoring.stats import bootstrap_ratio_ci

    r = split_result()
    by_template = replace(r, settings=replace(r.settings, bootstrap_unit="template"))
    split = breakdown(by_template, n_boot=300)
    baba = split["by_order"]["faithfulness (node level)"]["BABA"]
    mask = np.asarray(TEMPLATES) < 15
    want = bootstrap_ratio_ci(np.asarray(FC)[mask], np.asarray(FM)[mask], n_resamples=300, seed=0,
                              clusters=np.asarray(TEMPLATES)[mask].tolist())
    assert baba["unit"] == "template" and baba["ci"] == pytest.approx(list(want))
    # One template alone resamples its prompts; a prompt-level run stays prompt-level.
    assert split["by_template"]["faithfulness (node level)"]["0"]["unit"] == "prompt"
    assert breakdown(replace(r, settings=replace(r.settings, bootstrap_unit="prompt")),
                     n_boot=300)["by_order"]["faithfulness (node level)"]["BABA"]["unit"] == "prompt"
