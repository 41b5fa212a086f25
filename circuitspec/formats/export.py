"""From a hypothesis or a verified result to an edge-scored graph, with an account of losses.

A hypothesis edge joins groups at one position; the tools' graphs join single
components at every position. Each group edge becomes one graph edge per
(sender member, receiving head) pair, into the same input; its score is the
measured effect (from ``results.json``: the sender head's own effect along the
edge, ``per_head``, else the group's joint effect) and it is in the graph when
the edge was verified. A hypothesis file has no measured effects, so its edges
carry no score. What the target format cannot hold is named in the notes.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from circuitspec.bridge.loading import model_info
from circuitspec.errors import FormatError
from circuitspec.formats.graph import GraphEdge, GraphShape, Note, ScoredGraph
from circuitspec.results import Result
from circuitspec.spec.heads import format_member, parse_member
from circuitspec.spec.load import load_hypothesis
from circuitspec.spec.schema import INPUT

__all__ = ["from_hypothesis", "from_result", "load_source"]

_NO_POSITIONS = {"eap-ig": "EAP-IG JSON", "mib-pt": "MIB .pt", "acdc": "ACDC edges.pkl",
                 "auto-circuit": "auto-circuit (token indices only, not named positions)"}


def _member(ref: str) -> str:
    return format_member(*parse_member(ref))


def _expand(groups: dict[str, list[str]], sender: str, receiver: str, via: str | None, at: str,
            scores: dict[str, float | None], in_graph: bool) -> list[GraphEdge]:
    dsts = ["logits"] if receiver == "logits" else [
        m for m in groups[receiver] if m.startswith("L")]
    return [GraphEdge(src, dst, via, scores.get(src), in_graph, at=at)  # type: ignore[arg-type]
            for src in groups[sender] for dst in dsts]


def _common_notes(edges: list[GraphEdge], n_groups: int, fmt: str) -> list[Note]:
    notes = []
    at = Counter(e.at for e in edges if e.dst != "logits")
    if at:
        where = ", ".join(f"{n} at {p}" for p, n in sorted(at.items(), key=lambda x: str(x[0])))
        notes.append(Note("lost", f"positions: {_NO_POSITIONS[fmt]} has no named positions; "
                                  f"head-to-head edges were read {where}", sum(at.values())))
    notes.append(Note("lost", f"the {n_groups} groups and their roles: the file holds "
                              "component-level edges; pass the hypothesis as --roles on import "
                              "to get them (and the positions) back"))
    notes.append(Note("lost", "a group edge is one joint patch of all its senders into all its "
                              "receivers; the file scores each head pair on its own"))
    keys = Counter(e.key for e in edges)
    twice = sum(n - 1 for n in keys.values() if n > 1)
    if twice:
        notes.append(Note("lost", "the same head pair and input at several positions becomes "
                                  "one edge (the first one's score)", twice))
    notes.append(Note("lost", "no input-embedding or MLP-receiver edges: circuitspec keeps "
                              "embeddings clean and MLPs on every path; a tool evaluating the "
                              "file as its own circuit would ablate them"))
    return notes


def _dedupe(edges: list[GraphEdge]) -> tuple[GraphEdge, ...]:
    seen: dict[tuple, GraphEdge] = {}
    for e in edges:
        seen.setdefault(e.key, e)
    return tuple(seen.values())


def _shape(model: str, n_layers: int, n_heads: int) -> GraphShape:
    info = model_info(model)
    d_model = info.d_model if info is not None else None
    parallel = info is not None and "NeoX" in info.architecture
    return GraphShape(n_layers, n_heads, d_model, parallel)


def from_hypothesis(path: Path, fmt: str) -> ScoredGraph:
    """A hypothesis file's edges, unscored, all in the graph."""
    hyp = load_hypothesis(path)
    info = model_info(hyp.model_name, hyp.model_spec.revision)
    if info is None:
        raise FormatError(f"{path}: the shape of model {hyp.model_name!r} is unknown here "
                          "(the model hub is not reachable); export needs its layers and heads")
    groups = {name: [_member(m) for m in spec.heads] for name, spec in hyp.nodes.items()}
    if hyp.graph == "mib":
        groups.setdefault(INPUT, [INPUT])  # from: input, the token embedding
    edges: list[GraphEdge] = []
    for e in hyp.edges:
        edges += _expand(groups, e.sender, e.receiver, e.via, e.at, {}, True)
    notes = [Note("lost", "scores: a hypothesis file has no measured effects, so no edge has a "
                          "score (written as 0 where the format needs a number); export a "
                          "results.json from `circuitspec verify --out` for measured effects"),
             *_common_notes(edges, len(groups), fmt)]
    shape = GraphShape(info.n_layers, info.n_heads, info.d_model, "NeoX" in info.architecture)
    return ScoredGraph(str(path), fmt, _dedupe(edges), shape, tuple(notes), has_scores=False)


def from_result(path: Path, fmt: str) -> ScoredGraph:
    """A results.json's edges: score = measured effect, in the graph = verified."""
    result = Result.load(path)
    nodes = result.hypothesis.nodes
    if not nodes:
        raise FormatError(f"{path}: the results file lists no hypothesis nodes "
                          "(hypothesis.nodes); re-run `circuitspec verify --out` to export it")
    groups = {n.name: [*map(_member, n.heads), *(f"MLP{m}" for m in n.mlps)] for n in nodes}
    edges: list[GraphEdge] = []
    fallback = 0
    for e in result.edges:
        if e.sender not in groups or (e.receiver != "logits" and e.receiver not in groups):
            raise FormatError(f"{path}: edge {e.name} names a group hypothesis.nodes lacks")
        at = ",".join(e.at) if isinstance(e.at, tuple) else (e.at or "END")
        own = {_member(h.head): h.effect for h in e.per_head if h.effect is not None}
        scores = {m: own.get(m, e.effect) for m in groups[e.sender]}
        fallback += sum(m not in own for m in groups[e.sender])
        edges += _expand(groups, e.sender, e.receiver, e.via, at, scores, e.verdict == "verified")
    notes = [Note("assumed", "scores = measured effects (M_patched - M_clean) / (M_clean - "
                             "M_corrupt): each pair gets its sender head's own effect along the "
                             "group edge (per_head)"
                             + (f", or the group's joint effect for {fallback} senders not "
                                "measured alone" if fallback else "")),
             Note("assumed", "in the circuit = the edge's verdict is verified",
                  sum(e.verdict == "verified" for e in result.edges)),
             *_common_notes(edges, len(groups), fmt)]
    m = result.model
    shape = _shape(m.reference, m.n_layers, m.n_heads)
    return ScoredGraph(str(path), fmt, _dedupe(edges), shape, tuple(notes))


def load_source(path: Path, fmt: str) -> ScoredGraph:
    """A hypothesis YAML or a results.json, as a graph for ``fmt``."""
    if not path.exists():
        raise FormatError(f"{path}: no such file")
    if path.suffix in (".yaml", ".yml"):
        return from_hypothesis(path, fmt)
    return from_result(path, fmt)
