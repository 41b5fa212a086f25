"""auto-circuit's edges, by name (UFO-101/auto-circuit ``types.Edge.name``).

auto-circuit names an edge ``"{src}->{dest}"``: sources ``Resid Start`` (the
input), ``A{L}.{H}`` (head output) and ``MLP {L}``; destinations
``A{L}.{H}.Q``/``.K``/``.V`` (one per query head, as its graph builds them for
``range(n_heads)``), ``A{L}.{H}`` when Q, K and V are not separated, ``MLP {L}``
and ``Resid End`` (the logits). An edge can carry a token index, ``seq_idx``.
Its own caches (``PruneScores``) are tensors keyed by module names; circuits
are written by edge name, as in its official circuits (``edges_present``).

The JSON accepted here, at the top level or under ``"edges"``, is any of:

- ``{"A0.1->A2.3.Q": -0.4, ...}``: scores (pick the circuit with --top-k/--threshold);
- ``{"A0.1->A2.3.Q": true, ...}`` or ``["A0.1->A2.3.Q", ...]``: membership;
- ``{"A0.1->A2.3.Q": [5, 7], ...}``: membership at these token indices;
- ``[{"name": "A0.1->A2.3.Q", "score": -0.4, "in_graph": true, "seq_idx": null}, ...]``
  (the form ``circuitspec export`` writes; every field but ``name`` optional), or the same
  records with an Edge's own ``src`` and ``dest`` in place of ``name``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from circuitspec.errors import FormatError
from circuitspec.formats.graph import (
    GraphEdge,
    Note,
    ScoredGraph,
    component,
    parse_component,
    read_json,
)
from circuitspec.output.atomic import atomic_write_text

__all__ = ["read", "write"]

_SRC = re.compile(r"^(?:A(\d+)\.(\d+)|MLP (\d+)|Resid Start)$")
_DST = re.compile(r"^(?:A(\d+)\.(\d+)(?:\.([QKV]))?|MLP (\d+)|Resid End)$")


def _parse(name: Any, source: str) -> list[tuple[str, str, str | None]]:
    """One auto-circuit edge name -> its edges (three when Q, K, V are not separated)."""
    parts = name.split("->") if isinstance(name, str) else []
    s = _SRC.match(parts[0]) if len(parts) == 2 else None
    d = _DST.match(parts[1]) if len(parts) == 2 else None
    if s is None or d is None:
        raise FormatError(f"{source}: {name!r} is not an auto-circuit edge name (like "
                          "'A0.1->A2.3.Q', 'Resid Start->MLP 0' or 'MLP 1->Resid End')")
    if s.group(1) is not None:
        src = component("head", int(s.group(1)), int(s.group(2)))
    elif s.group(3) is not None:
        src = component("mlp", int(s.group(3)))
    else:
        src = "input"
    if d.group(1) is not None:
        dst = component("head", int(d.group(1)), int(d.group(2)))
        vias = [d.group(3).lower()] if d.group(3) else ["q", "k", "v"]
        return [(src, dst, via) for via in vias]
    dst = component("mlp", int(d.group(4))) if d.group(4) is not None else "logits"
    return [(src, dst, None)]


def _records(data: Any, source: str) -> list[dict[str, Any]]:
    if isinstance(data, dict) and "edges" in data:
        data = data["edges"]
    if isinstance(data, list):
        out = []
        for i, item in enumerate(data):
            if isinstance(item, str):
                out.append({"name": item, "in_graph": True})
            elif isinstance(item, dict) and isinstance(item.get("name", item.get("edge")), str):
                out.append({**item, "name": item.get("name", item.get("edge"))})
            elif isinstance(item, dict) and isinstance(item.get("src"), str) and isinstance(
                    item.get("dest"), str):  # an Edge's own fields: src, dest, seq_idx
                rest = {k: v for k, v in item.items() if k not in ("src", "dest")}
                out.append({**rest, "name": f"{item['src']}->{item['dest']}"})
            else:
                raise FormatError(f"{source}: edges[{i}] must be an edge name or "
                                  f"{{name, score, in_graph, seq_idx}}, not {item!r}"[:300])
        return out
    if not isinstance(data, dict):
        raise FormatError(f"{source}: an auto-circuit file maps edge names to scores, "
                          f"membership or token indices, not a {type(data).__name__}")
    out = []
    for name, value in data.items():
        if isinstance(value, bool):
            out.append({"name": name, "in_graph": value})
        elif isinstance(value, int | float):
            out.append({"name": name, "score": value})
        elif isinstance(value, list) and all(isinstance(x, int) for x in value):
            out += [{"name": name, "in_graph": True, "seq_idx": x} for x in value]
        elif isinstance(value, dict):
            out.append({**value, "name": name})
        else:
            raise FormatError(f"{source}: edges[{name!r}] must be a score, true/false, a list "
                              f"of token indices or {{score, in_graph, seq_idx}}, not {value!r}")
    return out


def read(path: Path) -> ScoredGraph:
    """Read auto-circuit edges from JSON."""
    source = str(path)
    data = read_json(path, "auto-circuit edges are read from JSON")
    edges, unsplit, any_member, any_score = [], 0, False, False
    for rec in _records(data, source):
        name = rec["name"]
        extra = set(rec) - {"name", "edge", "score", "in_graph", "seq_idx"}
        if extra:
            raise FormatError(f"{source}: edge {name!r}: unknown field(s) {', '.join(sorted(extra))}")
        score, member, seq = rec.get("score"), rec.get("in_graph"), rec.get("seq_idx")
        if score is not None and (not isinstance(score, int | float) or isinstance(score, bool)):
            raise FormatError(f"{source}: edge {name!r}: score must be a number, not {score!r}")
        if member is not None and not isinstance(member, bool):
            raise FormatError(f"{source}: edge {name!r}: in_graph must be true or false")
        if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool)):
            raise FormatError(f"{source}: edge {name!r}: seq_idx must be an integer or null")
        parsed = _parse(name, source)
        unsplit += len(parsed) == 3
        any_member |= member is not None
        any_score |= score is not None
        for src, dst, via in parsed:
            if src != "input" and dst != "logits" and _layer(src, dst):
                raise FormatError(f"{source}: edge {name!r} goes backward: {src} cannot feed {dst}")
            edges.append(GraphEdge(src, dst, via, None if score is None else float(score),  # type: ignore[arg-type]
                                   bool(member) if member is not None else score is None, seq))
    notes = []
    if unsplit:
        notes.append(Note("assumed", "destinations A{L}.{H} without .Q/.K/.V (Q, K, V not "
                                     "separated) read as three edges, into q, k and v", unsplit))
    return ScoredGraph(source, "auto-circuit", tuple(edges), notes=tuple(notes),
                       has_membership=any_member or not any_score, has_scores=any_score)


def _layer(src: str, dst: str) -> bool:
    """True when ``src`` cannot feed ``dst`` (not earlier; a head may feed its layer's MLP)."""
    skind, slayer, _ = parse_component(src)
    dkind, dlayer, _ = parse_component(dst)
    assert slayer is not None and dlayer is not None
    return slayer > dlayer or (slayer == dlayer and not (skind == "head" and dkind == "mlp"))


def _name(edge: GraphEdge) -> str:
    skind, slayer, shead = parse_component(edge.src)
    src = {"input": "Resid Start", "head": f"A{slayer}.{shead}", "mlp": f"MLP {slayer}"}[skind]
    dkind, dlayer, dhead = parse_component(edge.dst)
    if dkind == "head":
        dst = f"A{dlayer}.{dhead}.{(edge.via or 'q').upper()}"
    else:
        dst = {"mlp": f"MLP {dlayer}", "logits": "Resid End"}[dkind]
    return f"{src}->{dst}"


def write(graph: ScoredGraph, path: Path) -> Path:
    """Write the graph's edges as ``{"edges": [{name, score, in_graph, seq_idx}, ...]}``."""
    records = [{"name": _name(e), "score": e.score if e.has_score else None,
                "in_graph": bool(e.in_graph), "seq_idx": e.seq_idx} for e in graph.edges]
    return atomic_write_text(path, json.dumps({"edges": records}, indent=1) + "\n")
