"""EAP-IG's graph JSON, the format of the MIB circuit track (hannamw/EAP-IG ``Graph.to_json``).

Layout::

    {"cfg":   {"n_layers": 12, "n_heads": 12, "parallel_attn_mlp": false, "d_model": 768},
     "nodes": {"input": {"in_graph": true}, "a0.h1": {"in_graph": true, "score": 0.1}, ...,
               "m0": {...}, ..., "logits": {...}},
     "edges": {"input->a0.h1<q>": {"score": -0.04, "in_graph": true},
               "a0.h1->m0": {...}, "m11->logits": {...}, ...}}

Nodes are ``input``, ``a{L}.h{H}``, ``m{L}`` and ``logits``; an edge into a head
names the input it enters (``<q>``, ``<k>``, ``<v>``). Attention is "ungrouped":
on a grouped-query model a k/v edge still names one query head. There are no
token positions. ``score`` is absent in MIB's multiple-circuits variant.

The node and index bookkeeping here is shared with the ``.pt`` variant
(:mod:`circuitspec.formats.mib_pt`).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from circuitspec.errors import FormatError
from circuitspec.formats.graph import (
    GraphEdge,
    GraphShape,
    Note,
    ScoredGraph,
    component,
    parse_component,
    read_json,
)
from circuitspec.output.atomic import atomic_write_text

__all__ = [
    "backward_nodes", "forward_nodes", "from_eap", "is_real", "read", "shape_from_cfg",
    "to_eap", "write",
]

_NODE = re.compile(r"^(?:a(\d+)\.h(\d+)|m(\d+)|input|logits)$")
_EDGE = re.compile(r"^([^<>]+?)->([^<>]+?)(?:<([qkv])>)?$")


def from_eap(name: str) -> str:
    """``"a3.h1"`` -> ``"L3H1"``, ``"m3"`` -> ``"MLP3"``; input and logits unchanged."""
    m = _NODE.match(name)
    if m is None:
        raise ValueError(name)
    if m.group(1) is not None:
        return component("head", int(m.group(1)), int(m.group(2)))
    if m.group(3) is not None:
        return component("mlp", int(m.group(3)))
    return name


def to_eap(name: str) -> str:
    """circuitspec's component name in EAP-IG's spelling."""
    kind, layer, head = parse_component(name)
    return {"head": f"a{layer}.h{head}", "mlp": f"m{layer}"}.get(kind, kind)


def forward_nodes(n_layers: int, n_heads: int) -> list[str]:
    """EAP-IG's source nodes in matrix order: input, then per layer its heads and its MLP."""
    out = ["input"]
    for layer in range(n_layers):
        out += [f"a{layer}.h{h}" for h in range(n_heads)] + [f"m{layer}"]
    return out


def backward_nodes(n_layers: int, n_heads: int) -> list[str]:
    """EAP-IG's destination nodes in matrix order: per layer q, k, v of each head, the MLP;
    then the logits."""
    out = []
    for layer in range(n_layers):
        for letter in "qkv":
            out += [f"a{layer}.h{h}<{letter}>" for h in range(n_heads)]
        out.append(f"m{layer}")
    return [*out, "logits"]


def is_real(src: str, dst: str, parallel: bool) -> bool:
    """Whether ``src`` (circuitspec name) can feed ``dst`` in EAP-IG's residual graph."""
    skind, slayer, _ = parse_component(src)
    dkind, dlayer, _ = parse_component(dst)
    if skind == "logits" or dkind == "input":
        return False
    if dkind == "logits" or skind == "input":
        return True
    assert slayer is not None and dlayer is not None
    if dkind == "mlp" and skind == "head" and not parallel:
        return slayer <= dlayer
    return slayer < dlayer


def shape_from_cfg(cfg: Any, source: str) -> GraphShape:
    """The cfg block, checked: n_layers and n_heads positive ints."""
    if not isinstance(cfg, dict):
        raise FormatError(f"{source}: cfg must be a mapping with n_layers and n_heads")
    for key in ("n_layers", "n_heads"):
        value = cfg.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise FormatError(f"{source}: cfg.{key} must be a positive integer, not {value!r}")
    d_model = cfg.get("d_model")
    parallel = cfg.get("parallel_attn_mlp")
    return GraphShape(cfg["n_layers"], cfg["n_heads"], d_model if isinstance(d_model, int) else None,
                      bool(parallel) if parallel is not None else None)


def parse_edge_name(name: str, source: str) -> tuple[str, str, str | None]:
    """``"a0.h1->a2.h3<k>"`` -> ``("L0H1", "L2H3", "k")``; FormatError for anything else."""
    m = _EDGE.match(name)
    try:
        if m is None:
            raise ValueError(name)
        src, dst, via = from_eap(m.group(1)), from_eap(m.group(2)), m.group(3)
    except ValueError:
        raise FormatError(f"{source}: edge {name!r} is not an EAP-IG edge name (like "
                          "'a0.h1->a2.h3<q>', 'm1->logits' or 'input->m0')") from None
    into_head = parse_component(dst)[0] == "head"
    if into_head != (via is not None):
        need = "needs <q>, <k> or <v>" if into_head else "cannot have <q>/<k>/<v>"
        raise FormatError(f"{source}: edge {name!r}: an edge into {m.group(2)} {need}")
    return src, dst, via


def read(path: Path) -> ScoredGraph:
    """Read an EAP-IG/MIB graph JSON file."""
    source = str(path)
    data = read_json(path, "an EAP-IG graph is JSON")
    if not isinstance(data, dict) or not {"cfg", "edges"} <= set(data):
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise FormatError(f"{source}: not an EAP-IG graph: expected keys cfg, nodes and edges, "
                          f"found {keys}")
    shape = shape_from_cfg(data["cfg"], source)
    raw = data["edges"]
    if not isinstance(raw, dict):
        raise FormatError(f"{source}: edges must be a mapping from edge name to "
                          "{score, in_graph}")
    edges, any_member, any_score = [], False, False
    for name, info in raw.items():
        src, dst, via = parse_edge_name(name, source)
        if not isinstance(info, dict):
            raise FormatError(f"{source}: edges[{name!r}] must be {{score, in_graph}}, "
                              f"not {info!r}")
        score = info.get("score")
        if score is not None and (not isinstance(score, int | float) or isinstance(score, bool)):
            raise FormatError(f"{source}: edges[{name!r}].score must be a number, not {score!r}")
        member = info.get("in_graph")
        if member is not None and not isinstance(member, bool):
            raise FormatError(f"{source}: edges[{name!r}].in_graph must be true or false")
        if not is_real(src, dst, bool(shape.parallel_attn_mlp)):
            raise FormatError(f"{source}: edge {name!r} goes backward: {src} cannot feed {dst}")
        any_member |= member is not None
        any_score |= score is not None
        edges.append(GraphEdge(src, dst, via, None if score is None else float(score),  # type: ignore[arg-type]
                               bool(member)))
    nodes = data.get("nodes") or {}
    in_nodes = tuple(from_eap(n) for n, v in nodes.items()
                     if isinstance(v, dict) and v.get("in_graph") and _NODE.match(n)
                     and n not in ("input", "logits"))
    notes = [Note("lost", "EAP-IG graphs have no token positions: an edge stands for every "
                          "position at once")]
    return ScoredGraph(source, "eap-ig", tuple(edges), shape, tuple(notes),
                       has_membership=any_member, has_scores=any_score, nodes_in_graph=in_nodes)


def write(graph: ScoredGraph, path: Path) -> Path:
    """Write ``graph`` as EAP-IG JSON: every node, and the graph's own edges only (EAP-IG's
    reader leaves edges a file does not list at score 0, out of the circuit)."""
    shape = graph.shape
    assert shape.n_layers is not None and shape.n_heads is not None
    cfg = {"n_layers": shape.n_layers, "n_heads": shape.n_heads,
           "parallel_attn_mlp": bool(shape.parallel_attn_mlp), "d_model": shape.d_model}
    live = {e.src for e in graph.edges if e.in_graph} | {e.dst for e in graph.edges if e.in_graph}
    nodes = {name: {"in_graph": name == "logits" or from_eap(name) in live}
             for name in [*forward_nodes(shape.n_layers, shape.n_heads), "logits"]}
    edges: dict[str, dict[str, Any]] = {}
    for e in graph.edges:
        name = f"{to_eap(e.src)}->{to_eap(e.dst)}" + (f"<{e.via}>" if e.via else "")
        score = e.score if e.has_score else 0.0
        edges[name] = {"score": float(score) if score is not None and math.isfinite(score) else 0.0,
                       "in_graph": bool(e.in_graph)}
    return atomic_write_text(path, json.dumps({"cfg": cfg, "nodes": nodes, "edges": edges}) + "\n")
