"""The interactive report.html: the view it is drawn from, read defensively, and a page
that needs no network. (tests/output/test_report_browser.py opens it in a real browser.)"""

from __future__ import annotations

import json
import re

import pytest
from helpers.sample_result import sample_result

from circuitspec.output.interactive import render_interactive, view
from circuitspec.output.outputs import write_outputs


def _embedded(page: str) -> dict:
    text = re.search(r'<script type="application/json" id="circuitspec-data">(.*?)</script>', page, re.S)
    assert text is not None
    return json.loads(text.group(1))


@pytest.mark.parametrize("results", [{}, {"edges": None, "circuit": None}, {"edges": [{}], "hypothesis": {"nodes": [{}]}},
                                     {"edges": [{"from": "a", "to": "logits", "effect": "x", "ci": [1], "per_head": 3,
                                                 "null": [], "per_prompt": {"a": 1}}], "metric": {"per_prompt": 7},
                                      "circuit": {"faithfulness": {"value": None, "per_prompt": []}},
                                      "robustness": [None, {"setting": 3}], "timings": [],
                                      "settings": {"n_bootstrap": float("nan")}}])
def test_view_never_crashes_on_missing_or_odd_fields(results: dict):
    v = view(results)
    page = render_interactive(results)
    assert _embedded(page)["edges"] == json.loads(json.dumps(v["edges"]))


def test_per_template_effects_and_per_prompt_effects_worked_by_hand():
    results = {
        "metric": {"clean": 3.0, "corrupt": 1.0,
                   "per_prompt": {"clean": [2.0, 4.0, 1.0, 5.0], "corrupt": [0.0, 2.0, 1.0, 1.0],
                                  "template": [0, 0, 1, 1]}},
        "edges": [{"from": "a", "to": "logits", "at": "END", "effect": -0.5, "per_prompt": [1.0, 3.0, 2.0, 2.0]}],
    }
    e = view(results)["edges"][0]
    # template 0: clean mean 3, corrupt mean 1, patched mean 2 -> (2 - 3) / (3 - 1) = -0.5
    # template 1: clean mean 3, corrupt mean 1, patched mean 2 -> -0.5 as well; make them differ:
    assert [r["template"] for r in e["per_template"]] == ["0", "1"]
    assert e["per_template"][0] == {"template": "0", "n": 2, "effect": pytest.approx(-0.5)}
    results["edges"][0]["per_prompt"] = [1.0, 3.0, 3.0, 5.0]  # template 1 patched mean 4 -> (4 - 3) / 2
    e = view(results)["edges"][0]
    assert e["per_template"][1]["effect"] == pytest.approx(0.5)
    # per prompt: (patched - clean) / (M_clean - M_corrupt) = (p - c) / 2
    assert e["per_prompt_effect"] == pytest.approx([-0.5, -0.5, 1.0, 0.0])


def test_view_reads_null_semantics_and_scores_when_present():
    results = {
        "settings": {"ablation_level": "edge"},
        "edges": [{"from": "a", "to": "b", "via": "q", "at": "END", "effect": -0.2, "ci": [-0.3, -0.1],
                   "verdict": "verified", "null": {"n": 10, "kind": "layer_matched", "low": -0.01,
                                                   "high": 0.02, "p_value": 0.09}}],
        "robustness": [{"setting": "path semantics (edge effects)", "edge_effects": {"a->b.q@END": -0.2}},
                       {"setting": "direct semantics (edge effects)", "edge_effects": {"a->b.q@END": -0.15}}],
        "circuit": {"faithfulness": {"value": 0.9, "ci": [0.8, 1.0], "verdict": "verified"},
                    "faithfulness_edge_level": {"value": 0.5, "ci": [0.4, 0.6], "verdict": None,
                                                "per_prompt": {"circuit": [1.0, 2.0], "model": [2.0, 2.0]}}},
    }
    v = view(results)
    e = v["edges"][0]
    assert e["id"] == "a->b.q@END"
    assert e["null"] == {"n": 10.0, "kind": "layer_matched", "low": -0.01, "high": 0.02, "p_value": 0.09}
    assert e["semantics"] == {"path": -0.2, "direct": -0.15}
    # faithfulness is node level, judged only at its own level (it was called "edge level, judged").
    assert [s["label"] for s in v["scores"]] == ["faithfulness (node level)", "faithfulness (edge level, judged)"]
    node_run = view({**results, "settings": {"ablation_level": "node"}})
    assert [s["label"] for s in node_run["scores"]] == ["faithfulness (node level, judged)", "faithfulness (edge level)"]
    assert v["scores"][1]["per_prompt"] == {"circuit": [1.0, 2.0], "model": [2.0, 2.0]}
    assert [g["id"] for g in v["groups"]] == ["a", "b"]  # ends missing from hypothesis.nodes get a node


def test_page_is_self_contained_and_escapes_what_it_embeds():
    results = {"hypothesis": {"name": "</script><script>alert(1)</script>", "nodes": []}}
    page = render_interactive(results)
    assert "<script>alert(1)" not in page
    assert _embedded(page)["title"] == results["hypothesis"]["name"]
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", page)
    assert "cytoscape" in page and "window.Plotly" in page


def test_write_outputs_writes_the_interactive_page_with_the_text_report(tmp_path):
    result = sample_result()
    paths = write_outputs(result, tmp_path)
    page = paths["report.html"].read_text()
    data = _embedded(page)
    assert [e["id"] for e in data["edges"]] == [e.name for e in result.edges]
    assert "The text report" in page and "<svg" in page
