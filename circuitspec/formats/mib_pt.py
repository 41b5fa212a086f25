"""EAP-IG's ``.pt`` graph (``Graph.to_pt``), the MIB circuit track's compact format.

A ``torch.save`` of one dict: ``cfg`` (as in the JSON), ``src_nodes`` (the
forward nodes: ``input``, then per layer ``a{L}.h0`` .. ``a{L}.h{H-1}``,
``m{L}``), ``dst_nodes`` (the backward nodes: per layer the heads' ``<q>``, then
``<k>``, then ``<v>`` inputs, then ``m{L}``; last ``logits``), the
``edges_scores`` and ``edges_in_graph`` matrices [src, dst], ``nodes_in_graph``
[src] and optionally ``nodes_scores``. Matrix cells that are not edges of the
residual graph (``m10 -> m2``) are ignored.

It is read with ``torch.load(weights_only=True)``: tensors, lists, dicts and
numbers only, never arbitrary pickled objects.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from circuitspec.errors import FormatError
from circuitspec.formats.eap_ig import (
    backward_nodes,
    forward_nodes,
    from_eap,
    is_real,
    parse_edge_name,
    shape_from_cfg,
)
from circuitspec.formats.graph import GraphEdge, Note, ScoredGraph
from circuitspec.output.atomic import atomic_write_bytes

__all__ = ["read", "write"]

_KEYS = ("cfg", "src_nodes", "dst_nodes", "edges_scores", "edges_in_graph", "nodes_in_graph")


def _load(path: Path) -> Any:
    import torch

    source = str(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except OSError as exc:
        raise FormatError(f"{source}: cannot read file ({exc.strerror})") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FormatError(f"{source}: not a torch.save file that loads with weights_only=True "
                          f"(tensors, lists, dicts only): {first}") from None


def read(path: Path) -> ScoredGraph:
    """Read a MIB/EAP-IG ``.pt`` graph."""
    import torch

    source = str(path)
    data = _load(path)
    if not isinstance(data, dict) or not set(_KEYS) <= set(data):
        found = sorted(map(str, data)) if isinstance(data, dict) else type(data).__name__
        missing = sorted(set(_KEYS) - set(data)) if isinstance(data, dict) else list(_KEYS)
        raise FormatError(f"{source}: not a MIB .pt graph: missing {', '.join(missing)} "
                          f"(found {found})")
    shape = shape_from_cfg(data["cfg"], source)
    assert shape.n_layers is not None and shape.n_heads is not None
    want_src = forward_nodes(shape.n_layers, shape.n_heads)
    want_dst = backward_nodes(shape.n_layers, shape.n_heads)
    if list(data["src_nodes"]) != want_src or list(data["dst_nodes"]) != want_dst:
        raise FormatError(f"{source}: src_nodes/dst_nodes are not EAP-IG's node order for "
                          f"{shape.n_layers} layers x {shape.n_heads} heads")
    scores, member = data["edges_scores"], data["edges_in_graph"]
    want = (len(want_src), len(want_dst))
    for key, tensor in (("edges_scores", scores), ("edges_in_graph", member)):
        if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != want:
            got = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise FormatError(f"{source}: {key} must be a tensor of shape {want}, not {got}")
    parallel = bool(shape.parallel_attn_mlp)
    srcs = [from_eap(n) for n in want_src]
    dsts = [parse_edge_name(f"input->{n}", source)[1:] for n in want_dst]
    score_rows = scores.float().tolist()
    member_rows = member.bool().tolist()
    edges = []
    for i, src in enumerate(srcs):
        for j, (dst, via) in enumerate(dsts):
            if is_real(src, dst, parallel):
                edges.append(GraphEdge(src, dst, via, float(score_rows[i][j]),  # type: ignore[arg-type]
                                       bool(member_rows[i][j])))
    nodes = data["nodes_in_graph"]
    in_nodes = tuple(srcs[i] for i, on in enumerate(nodes.bool().tolist()) if on and i > 0) if (
        isinstance(nodes, torch.Tensor) and tuple(nodes.shape) == (len(srcs),)) else ()
    notes = (Note("lost", "MIB .pt graphs have no token positions: an edge stands for every "
                          "position at once"),)
    return ScoredGraph(source, "mib-pt", tuple(edges), shape, notes,
                       has_membership=bool(member.any()), has_scores=True, nodes_in_graph=in_nodes)


def write(graph: ScoredGraph, path: Path) -> Path:
    """Write ``graph`` as full [src, dst] matrices; edges the graph lacks are 0, out."""
    import io

    import torch

    shape = graph.shape
    assert shape.n_layers is not None and shape.n_heads is not None
    src_nodes = forward_nodes(shape.n_layers, shape.n_heads)
    dst_nodes = backward_nodes(shape.n_layers, shape.n_heads)
    row = {from_eap(n): i for i, n in enumerate(src_nodes)}
    col = {parse_edge_name(f"input->{n}", str(path))[1:]: j for j, n in enumerate(dst_nodes)}
    scores = torch.zeros(len(src_nodes), len(dst_nodes))
    member = torch.zeros(len(src_nodes), len(dst_nodes), dtype=torch.bool)
    nodes = torch.zeros(len(src_nodes), dtype=torch.bool)
    for e in graph.edges:
        i, j = row[e.src], col[(e.dst, e.via)]
        scores[i, j] = e.score if e.score is not None and e.has_score else 0.0
        member[i, j] = e.in_graph
        if e.in_graph:
            nodes[i] = True
            if e.dst in row:
                nodes[row[e.dst]] = True
    cfg = {"n_layers": shape.n_layers, "n_heads": shape.n_heads,
           "parallel_attn_mlp": bool(shape.parallel_attn_mlp), "d_model": shape.d_model}
    buffer = io.BytesIO()
    torch.save({"cfg": cfg, "src_nodes": src_nodes, "dst_nodes": dst_nodes,
                "edges_scores": scores, "edges_in_graph": member, "nodes_in_graph": nodes}, buffer)
    return atomic_write_bytes(path, buffer.getvalue())
