"""Diagrams: valid SVG naming every node and edge, PNG output, legend, verdict colours."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

import pytest
from helpers.paths import ROOT
from helpers.sample_result import NODES, sample_result

from circuitspec.errors import RenderError
from circuitspec.output.diagram import (
    ROLE_COLOURS,
    VERDICT_COLOURS,
    _tint,
    render,
    render_hypothesis,
    render_result,
)

SVG = "{http://www.w3.org/2000/svg}"


def _svg_groups(path, cls):
    """{title: [texts]} for every <g class=cls> in the SVG, plus the raw element list."""
    root = ET.parse(path).getroot()  # raises if the SVG is not well-formed XML
    groups = [g for g in root.iter(f"{SVG}g") if g.get("class") == cls]
    return [(g.findtext(f"{SVG}title"), g) for g in groups]


def _texts(element):
    return " ".join(t.text or "" for t in element.iter(f"{SVG}text"))


def _edge_colours(element):
    return {p.get("stroke") for p in element.iter(f"{SVG}path")}


def test_result_svg_names_every_node_and_edge(tmp_path):
    result = sample_result()
    path = render_result(result, tmp_path / "circuit.svg")
    nodes = dict(_svg_groups(path, "node"))
    for node in result.hypothesis.nodes:
        assert node.name in nodes
        label = _texts(nodes[node.name])
        assert node.role.replace("_", " ") in label
        assert all(h in label for h in node.heads)
    assert "logits" in nodes
    drawn = [(t, g) for t, g in _svg_groups(path, "edge") if _edge_colours(g) != {"none"}]
    for edge in result.edges:
        matches = [g for t, g in drawn if t == f"{edge.sender}->{edge.receiver}"]
        assert matches, f"edge {edge.name} missing from the SVG"
        label = " ".join(_texts(g) for g in matches)
        assert f"{edge.effect:.2f}" in label and f"[{edge.ci[0]:.2f}, {edge.ci[1]:.2f}]" in label
        assert edge.at in label
        if edge.via:
            assert edge.via in label


def test_verdict_colours_are_green_red_amber_grey_and_distinct():
    colours = {v: c for v, (c, _) in VERDICT_COLOURS.items()}
    assert colours == {"verified": "#009E73", "refuted": "#D55E00", "inconclusive": "#E69F00",
                       None: "#808080"}
    # Dash patterns repeat the verdict for greyscale prints and colour-blind readers.
    assert len({VERDICT_COLOURS[v][1] for v in ("verified", "refuted", "inconclusive")}) == 3


def test_verdict_colours_and_styles_are_applied(tmp_path):
    result = sample_result()
    path = render_result(result, tmp_path / "circuit.svg")
    edges = {t: g for t, g in _svg_groups(path, "edge")}
    for edge in result.edges:
        colour, style = VERDICT_COLOURS[edge.verdict]
        g = edges[f"{edge.sender}->{edge.receiver}"]
        assert _edge_colours(g) == {colour.lower()} or _edge_colours(g) == {colour}
        dashes = {p.get("stroke-dasharray") for p in g.iter(f"{SVG}path")}
        assert (dashes == {None}) == (style == "solid"), edge.verdict
    # Wider for larger effects.
    widths = {t: float(next(g.iter(f"{SVG}path")).get("stroke-width", 1)) for t, g in edges.items()
              if t in ("name_movers->logits", "induction->s_inhibition")}
    assert widths["name_movers->logits"] > widths["induction->s_inhibition"]


def test_nodes_are_filled_by_role(tmp_path):
    path = render_result(sample_result(), tmp_path / "circuit.svg")
    nodes = dict(_svg_groups(path, "node"))
    for node in NODES:
        fills = {p.get("fill").upper() for p in nodes[node.name].iter(f"{SVG}path")}
        assert _tint(ROLE_COLOURS[node.role]) in fills, node.name


def test_legend_lists_roles_and_verdicts(tmp_path):
    path = render_result(sample_result(), tmp_path / "circuit.svg")
    clusters = dict(_svg_groups(path, "cluster"))
    assert "cluster_legend" in clusters
    legend = _texts(clusters["cluster_legend"]) + " " + " ".join(
        _texts(g) for t, g in _svg_groups(path, "node") if t == "legend")
    for word in ("name mover", "s inhibition", "previous token", "verified", "refuted",
                 "inconclusive"):
        assert word in legend


def test_png_has_png_magic(tmp_path):
    path = render_result(sample_result(), tmp_path / "circuit.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_svg_is_deterministic(tmp_path):
    a = render_result(sample_result(), tmp_path / "a.svg").read_bytes()
    b = render_result(sample_result(), tmp_path / "b.svg").read_bytes()
    assert a == b
    assert render_result(sample_result(), tmp_path / "a.dot").read_bytes() == \
        render_result(sample_result(), tmp_path / "b.dot").read_bytes()


def test_layers_run_left_to_right_with_logits_last(tmp_path):
    path = render_result(sample_result(), tmp_path / "circuit.svg")
    x = {}
    for title, g in _svg_groups(path, "node"):
        xs = [float(t.get("x")) for t in g.iter(f"{SVG}text")]
        if xs:
            x[title] = min(xs)
    assert x["previous"] < x["induction"] < x["s_inhibition"] < x["name_movers"] < x["logits"]
    assert x["backup"] > x["s_inhibition"]  # L10 shares the L9 column or comes after it


@dataclass(frozen=True)
class Node:  # the shape spec.Hypothesis.circuit() returns
    name: str
    role: str
    heads: tuple[tuple[int, int], ...]
    mlps: tuple[int, ...] = ()


@dataclass(frozen=True)
class Edge:
    sender: str
    receiver: str
    via: str | None
    at: str | None
    sign: str = "negative"
    min_effect: float = 0.05


class Hypothesis:
    name = "tiny-hypothesis"

    def circuit(self):
        return ((Node("nm", "name_mover", ((9, 9),)), Node("sin", "s_inhibition", ((7, 3), (8, 6)))),
                (Edge("sin", "nm", "q", "END"), Edge("nm", "logits", None, "END")))


@pytest.mark.parametrize("source", [
    Hypothesis(),
    {"name": "tiny-hypothesis",
     "nodes": [{"name": "nm", "role": "name_mover", "heads": ["L9H9"]},
               {"name": "sin", "role": "s_inhibition", "heads": ["L7H3", "L8H6"]}],
     "edges": [{"from": "sin", "to": "nm", "via": "q", "at": "END"},
               {"from": "nm", "to": "logits", "at": "END"}]},
    {"nodes": {"nm": {"role": "name_mover", "heads": ["L9H9"]},
               "sin": {"role": "s_inhibition", "heads": ["L7H3", "L8H6"]}},
     "edges": [{"from": "sin", "to": "nm", "via": "q", "at": "END"},
               {"from": "nm", "to": "logits", "at": "END"}]},
], ids=["dataclasses", "plain", "yaml-shaped"])
def test_hypothesis_renders_from_any_shape(tmp_path, source):
    path = render(source, tmp_path / "hyp.svg")
    nodes = dict(_svg_groups(path, "node"))
    assert {"nm", "sin", "logits"} <= nodes.keys()
    assert "L7H3 L8H6" in _texts(nodes["sin"])
    edges = dict(_svg_groups(path, "edge"))
    assert "q @ END" in _texts(edges["sin->nm"])
    grey = VERDICT_COLOURS[None][0]
    assert _edge_colours(edges["sin->nm"]) == {grey.lower()} or _edge_colours(edges["sin->nm"]) == {grey}


def test_render_dispatches_on_results_json(tmp_path):
    result = sample_result()
    result.save(tmp_path / "results.json")
    a = render(tmp_path / "results.json", tmp_path / "a.svg").read_bytes()
    assert a == render(result, tmp_path / "b.svg").read_bytes()


def test_bad_suffix_and_bad_head_are_clear_errors(tmp_path):
    with pytest.raises(RenderError, match=r"\.svg"):
        render_result(sample_result(), tmp_path / "circuit.jpg")
    with pytest.raises(RenderError, match="L<layer>H<head>"):
        render_hypothesis({"nodes": [{"name": "a", "heads": ["H9L9"]}], "edges": []},
                          tmp_path / "x.svg")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("path", sorted(ROOT.glob("hypotheses/ioi_*.yaml")),
                         ids=lambda p: p.stem)
def test_shipped_hypotheses_render(tmp_path, path):
    from circuitspec.spec.load import load_hypothesis

    hyp = load_hypothesis(path)
    svg = render(hyp, tmp_path / "hyp.svg")
    nodes = dict(_svg_groups(svg, "node"))
    circuit = hyp.circuit()
    assert set(circuit.nodes) | {"logits"} <= nodes.keys()
    assert len([t for t, g in _svg_groups(svg, "edge") if _edge_colours(g) != {"none"}]) == len(
        circuit.edges)
