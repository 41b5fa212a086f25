"""Circuit diagrams: a hypothesis before it is run, or a result with its verdicts.

Nodes are the hypothesis's head groups, filled by role with a fixed
colour-blind-safe palette (Okabe & Ito) and ordered by their earliest layer
from left to right, with the logits as the sink on the right. Edges carry the
receiver input and position (``q @ END``); in a result they also carry the
effect and its interval, are coloured by verdict (and dashed or dotted, so the
verdict survives greyscale printing and colour blindness), and are drawn wider
the larger the effect. A legend lists the roles and verdicts in use.

Rendering reads only plain data: a :class:`~circuitspec.results.Result`, or a
hypothesis-like structure (anything with ``nodes`` and ``edges``, or with a
``circuit()`` method returning one). It never touches the model. The same input
always gives the same bytes.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from circuitspec.errors import RenderError
from circuitspec.output.atomic import atomic_write_bytes
from circuitspec.results import Result
from circuitspec.spec.heads import format_head, format_member, parse_head

__all__ = ["ROLE_COLOURS", "VERDICT_COLOURS", "RenderError", "render", "render_hypothesis",
           "render_result"]

# Okabe & Ito (2008), distinguishable under the common colour-vision deficiencies.
ROLE_COLOURS: dict[str, str] = {
    "name_mover": "#0072B2",
    "backup_name_mover": "#56B4E9",
    "negative_name_mover": "#CC79A7",
    "s_inhibition": "#D55E00",
    "induction": "#009E73",
    "duplicate_token": "#F0E442",
    "previous_token": "#E69F00",
    "other": "#999999",
}
#: Edge colour and line style per verdict; ``None`` is a hypothesis edge not yet checked.
VERDICT_COLOURS: dict[str | None, tuple[str, str]] = {
    "verified": ("#009E73", "solid"),
    "refuted": ("#D55E00", "dashed"),
    "inconclusive": ("#E69F00", "dotted"),
    None: ("#808080", "solid"),
}
FORMATS = {".svg": "svg", ".png": "png", ".pdf": "pdf", ".dot": "dot", ".gv": "dot"}
LOGITS = "logits"
FONT = "DejaVu Sans"
MONO = "DejaVu Sans Mono"


@dataclass(frozen=True)
class _Node:
    name: str
    role: str
    heads: tuple[tuple[int, int], ...]
    mlps: tuple[int, ...]

    @property
    def layer(self) -> int | None:
        layers = [h[0] for h in self.heads] + list(self.mlps)
        return min(layers) if layers else None


@dataclass(frozen=True)
class _Edge:
    sender: str
    receiver: str
    via: str | None
    at: str | None
    effect: float | None = None
    ci: tuple[float | None, float | None] | None = None
    verdict: str | None = None
    reason: str = ""


# --- reading duck-typed input ---------------------------------------------------------------


def _get(obj: Any, *names: str, default: Any = None) -> Any:
    for name in names:
        if isinstance(obj, Mapping):
            if name in obj:
                return obj[name]
        elif hasattr(obj, name):
            return getattr(obj, name)
    return default


def _head(h: Any) -> tuple[int, int]:
    if isinstance(h, str):
        try:
            return parse_head(h)
        except ValueError:
            raise RenderError(f"cannot read head {h!r}; write heads as L<layer>H<head>, e.g. L9H9") from None
    if isinstance(h, Sequence) and len(h) == 2:
        return int(h[0]), int(h[1])
    return int(_get(h, "layer")), int(_get(h, "head"))


def _at(at: Any) -> str | None:
    if at is None or isinstance(at, str):
        return at
    return ",".join(str(a) for a in at)


def _nodes(raw: Any) -> list[_Node]:
    items: Iterable[tuple[str, Any]]
    if isinstance(raw, Mapping):  # YAML form: {group name: {role, heads}}
        items = raw.items()
    else:
        items = ((_get(n, "name"), n) for n in raw)
    return [_Node(str(name), str(_get(n, "role", default="other") or "other"),
                  tuple(_head(h) for h in _get(n, "heads", default=()) or ()),
                  tuple(int(m) for m in _get(n, "mlps", default=()) or ()))
            for name, n in items]


def _edges(raw: Iterable[Any]) -> list[_Edge]:
    return [_Edge(str(_get(e, "sender", "from", "from_")), str(_get(e, "receiver", "to", "to_")),
                  _get(e, "via"), _at(_get(e, "at"))) for e in raw]


def _hypothesis_parts(circuit_like: Any) -> tuple[list[_Node], list[_Edge], str | None]:
    name = _get(circuit_like, "name")
    circuit = getattr(circuit_like, "circuit", None)
    if callable(circuit):
        circuit_like = circuit()
    if isinstance(circuit_like, tuple) and len(circuit_like) == 2:
        nodes, edges = circuit_like
    else:
        nodes, edges = _get(circuit_like, "nodes"), _get(circuit_like, "edges")
        if nodes is None or edges is None:
            raise RenderError("render_hypothesis needs something with 'nodes' and 'edges' "
                              f"(or a circuit() method), got {type(circuit_like).__name__}")
        name = name or _get(circuit_like, "name")
    return _nodes(nodes), _edges(edges), name if isinstance(name, str) else None


# --- drawing --------------------------------------------------------------------------------


def _tint(colour: str, keep: float = 0.35) -> str:
    rgb = [int(colour[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(c * keep + 255 * (1 - keep)):02X}" for c in rgb)


def _fmt(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _interval(ci: tuple[float | None, float | None] | None) -> str:
    return "" if ci is None else f"[{_fmt(ci[0])}, {_fmt(ci[1])}]"


def _node_label(node: _Node) -> str:
    e = html.escape
    parts = [format_head(h) for h in node.heads] + [format_member("mlp", m, None) for m in node.mlps]
    lines = [" ".join(parts[i:i + 4]) for i in range(0, len(parts), 4)]
    rows = [f'<TR><TD><B>{e(node.name)}</B></TD></TR>',
            f'<TR><TD><FONT POINT-SIZE="9" COLOR="#333333"><I>{e(node.role.replace("_", " "))}'
            "</I></FONT></TD></TR>"]
    rows += [f'<TR><TD><FONT FACE="{MONO}" POINT-SIZE="9">{e(line)}</FONT></TD></TR>'
             for line in lines]
    return '<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="1">' + "".join(rows) + "</TABLE>>"


def _legend_label(roles: list[str], verdicts: list[str | None]) -> str:
    # Roles and edge verdicts side by side, so the legend stays short beside a wide figure.
    role_cells = []
    for role in roles:
        colour = ROLE_COLOURS.get(role, ROLE_COLOURS["other"])
        role_cells.append(f'<TD BGCOLOR="{_tint(colour)}" COLOR="{colour}" BORDER="1" WIDTH="14">'
                          f'</TD><TD ALIGN="LEFT">{html.escape(role.replace("_", " "))}</TD>')
    edge_cells = []
    for verdict in verdicts:
        colour, style = VERDICT_COLOURS[verdict]
        text = "hypothesised" if verdict is None else f"{verdict} ({style})"
        edge_cells.append(f'<TD BGCOLOR="{colour}" WIDTH="14"></TD><TD ALIGN="LEFT">{text}</TD>')
    rows = ['<TR><TD COLSPAN="2" ALIGN="LEFT"><B>roles</B></TD><TD WIDTH="8"></TD>'
            '<TD COLSPAN="2" ALIGN="LEFT"><B>edges</B></TD></TR>']
    for i in range(max(len(role_cells), len(edge_cells))):
        left = role_cells[i] if i < len(role_cells) else '<TD COLSPAN="2"></TD>'
        right = edge_cells[i] if i < len(edge_cells) else '<TD COLSPAN="2"></TD>'
        rows.append(f"<TR>{left}<TD></TD>{right}</TR>")
    if verdicts != [None]:
        rows.append('<TR><TD COLSPAN="5" ALIGN="LEFT"><FONT POINT-SIZE="8" COLOR="#444444">'
                    "edge label: effect [95% CI]; width grows with |effect|</FONT></TD></TR>")
    return ('<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="2" CELLPADDING="1">'
            + "".join(rows) + "</TABLE>>")


def _graph(nodes: list[_Node], edges: list[_Edge], title: str, checked: bool) -> Any:
    try:
        import pygraphviz as pgv
    except ImportError as exc:  # pragma: no cover - a pinned dependency
        raise RenderError("drawing needs pygraphviz: pip install pygraphviz") from exc

    known = {n.name for n in nodes}
    for name in [x for e in edges for x in (e.sender, e.receiver)]:
        if name not in known and name != LOGITS:  # an edge to an undeclared group: still draw it
            nodes.append(_Node(name, "other", (), ()))
            known.add(name)

    g = pgv.AGraph(directed=True, strict=False, name="circuit")
    g.graph_attr.update(rankdir="LR", ranksep="0.7", nodesep="0.3", pad="0.25", fontname=FONT,
                        fontsize="14", labelloc="t", labeljust="l", label=title, newrank="true",
                        bgcolor="white", outputorder="edgesfirst")
    g.node_attr.update(fontname=FONT, fontsize="11", shape="box", style="rounded,filled",
                       margin="0.12,0.06", penwidth="1.6")
    g.edge_attr.update(fontname=FONT, fontsize="9", arrowsize="0.8")

    # Rank by earliest layer: an invisible spine of one point per layer keeps the columns in
    # layer order even where no hypothesis edge joins two groups. minlen=0 lets groups of
    # nearby layers share a column when no edge separates them, which keeps the figure compact.
    layers = sorted({n.layer for n in nodes if n.layer is not None})
    spine = [f"layer {lay}" for lay in layers] + ["output"]
    for s in spine:
        g.add_node(s, shape="point", style="invis", width="0", height="0", label="")
    for a, b in zip(spine, spine[1:], strict=False):
        g.add_edge(a, b, style="invis", weight="10", minlen="0" if b != "output" else "1")

    for node in nodes:
        colour = ROLE_COLOURS.get(node.role, ROLE_COLOURS["other"])
        g.add_node(node.name, label=_node_label(node), fillcolor=_tint(colour), color=colour,
                   id=f"node-{node.name}", tooltip=node.role)
    g.add_node(LOGITS, label="logits", shape="box", style="filled", fillcolor="#333333",
               fontcolor="white", color="#333333", id=f"node-{LOGITS}")
    for lay in layers:
        g.add_subgraph([f"layer {lay}"] + [n.name for n in nodes if n.layer == lay],
                       name=f"rank_{lay}", rank="same")

    for i, e in enumerate(edges):
        colour, style = VERDICT_COLOURS[e.verdict]
        where = " @ ".join(x for x in (e.via, e.at) if x)
        label = where
        width = 1.4
        if checked:
            label += f"\n{_fmt(e.effect)} {_interval(e.ci)}".rstrip()
            width = 1.2 + 4.8 * min(abs(e.effect), 1.0) if e.effect is not None else 1.2
        g.add_edge(e.sender, e.receiver, key=f"e{i}", label=label, color=colour, fontcolor="#222222",
                   style=style, penwidth=f"{width:.2f}", id=f"edge-{i}",
                   tooltip=f"{e.sender} -> {e.receiver}: {e.verdict or 'hypothesised'}"
                   + (f" ({e.reason})" if e.reason else ""))

    roles = list(dict.fromkeys(n.role if n.role in ROLE_COLOURS else "other" for n in nodes))
    verdicts: list[str | None] = ["verified", "refuted", "inconclusive"] if checked else [None]
    legend = g.add_subgraph(name="cluster_legend", label="legend", fontsize="9", labeljust="l",
                            style="rounded", color="#BBBBBB", fontcolor="#555555", margin="6")
    legend.add_node("legend", label=_legend_label(roles, verdicts), shape="plain",
                    style="", fontsize="9")
    g.add_subgraph(["output", LOGITS], name="rank_output", rank="same")
    g.add_edge("output", "legend", style="invis")  # legend in its own column right of the logits
    return g


def _write(g: Any, path: str | os.PathLike[str]) -> Path:
    out = Path(path)
    fmt = FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise RenderError(f"cannot draw to {out.name!r}: use one of {', '.join(sorted(FORMATS))}")
    data = g.string().encode() if fmt == "dot" else g.draw(format=fmt, prog="dot")
    return atomic_write_bytes(out, data)


def _title(main: str, sub: str | None) -> str:
    text = f'<<B>{html.escape(main)}</B>'
    if sub:
        text += f'<BR ALIGN="LEFT"/><FONT POINT-SIZE="10" COLOR="#444444">{html.escape(sub)}</FONT>'
    return text + '<BR ALIGN="LEFT"/>>'


def render_hypothesis(circuit_like: Any, path: str | os.PathLike[str]) -> Path:
    """Draw a hypothesis before any run: nodes by role, edges in grey with ``via @ at``.

    ``circuit_like`` is a ``Hypothesis`` (anything with a ``circuit()`` method), a
    ``(nodes, edges)`` pair, or anything with ``nodes`` and ``edges``: nodes as
    ``{name, role, heads, mlps}`` mappings or objects (heads as ``"L9H9"`` or
    ``(9, 9)``), or a mapping from group name to ``{role, heads}``; edges as
    ``{from, to, via, at}`` mappings or objects with ``sender``/``receiver``.
    The format follows the suffix: ``.svg``, ``.png``, ``.pdf`` or ``.dot``.
    """
    nodes, edges, name = _hypothesis_parts(circuit_like)
    title = _title(name or "circuit hypothesis", f"hypothesis: {len(edges)} edges, not yet verified")
    return _write(_graph(nodes, edges, title, checked=False), path)


def render_result(result: Any, path: str | os.PathLike[str]) -> Path:
    """Draw a verified circuit: edges coloured by verdict, labelled with effect and interval."""
    nodes = _nodes(result.hypothesis.nodes)
    edges = [_Edge(e.sender, e.receiver, e.via, _at(e.at), e.effect, e.ci, e.verdict, e.reason)
             for e in result.edges]
    n_ok = sum(e.verdict == "verified" for e in result.edges)
    sub = f"{'PASSED' if result.passed else 'FAILED'} on {result.model.name}: " \
          f"{n_ok}/{len(edges)} edges verified"
    if result.circuit is not None:
        f = result.circuit.faithfulness
        sub += f"; faithfulness {_fmt(f.value)} {_interval(f.ci)}"
    return _write(_graph(nodes, edges, _title(result.hypothesis.name, sub), checked=True), path)


def render(source: Any, path: str | os.PathLike[str]) -> Path:
    """Draw ``source`` to ``path``: a Result, a path to ``results.json``, or a hypothesis."""
    if isinstance(source, str | os.PathLike) and Path(source).suffix.lower() == ".json":
        source = Result.load(source)
    if isinstance(source, Result):
        return render_result(source, path)
    return render_hypothesis(source, path)
