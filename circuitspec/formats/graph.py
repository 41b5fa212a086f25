"""The edge-scored graph every circuit format is read into and written from.

EAP-IG/MIB, ACDC and auto-circuit all describe a circuit as edges between
components of one model: the input embedding, attention heads, MLPs and the
logits, each edge into a head entering its query, key or value input, each with
a score and a flag saying whether it is in the circuit. :class:`ScoredGraph` is
that common shape, in circuitspec's own component names (``input``, ``L3H1``,
``MLP3``, ``logits``). Readers turn a file into one, writers turn one into a
file, and :mod:`circuitspec.formats.mapping` turns it into a hypothesis and
back.

What a reader or the mapping could not keep, or had to assume, is a
:class:`Note`; every note is printed, so a user sees exactly what changed.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from circuitspec.errors import FormatError
from circuitspec.spec.heads import format_member

__all__ = [
    "FORMATS", "FormatError", "GraphEdge", "GraphShape", "Note", "ScoredGraph", "component",
    "parse_component", "read_json", "select_edges",
]

FORMATS = ("eap-ig", "mib-pt", "acdc", "auto-circuit")
"""The formats ``circuitspec import`` and ``circuitspec export`` speak."""

Via = Literal["q", "k", "v"]

_COMPONENT = re.compile(r"^(?:L(\d+)H(\d+)|MLP(\d+)|input|logits)$")


def read_json(path: Path, not_text: str) -> Any:
    """Parse a JSON circuit file; an unreadable, binary or malformed one is a FormatError
    naming the file (``not_text`` says what the file should have been)."""
    source = str(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise FormatError(f"{source}: cannot read file ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise FormatError(f"{source}: not a text file; {not_text}") from None
    except json.JSONDecodeError as exc:
        raise FormatError(f"{source}:{exc.lineno}: not valid JSON ({exc.msg})") from None


@dataclass(frozen=True)
class Note:
    """One thing a conversion lost or assumed, with how many edges it touched."""

    kind: Literal["lost", "assumed", "kept"]
    """lost: dropped or merged information; assumed: a value the file did not give; kept: said
    for completeness (e.g. nothing to fold)."""
    what: str
    """One sentence saying what and why."""
    count: int | None = None
    """How many edges (or heads) it concerns, when it is a count."""

    def line(self) -> str:
        n = f" [{self.count}]" if self.count is not None else ""
        return f"{self.kind}{n}: {self.what}"


@dataclass(frozen=True)
class GraphShape:
    """The model shape a file was made for, as far as the file says."""

    n_layers: int | None = None
    n_heads: int | None = None
    """Query heads per layer (the tools all index k/v inputs by query head)."""
    d_model: int | None = None
    parallel_attn_mlp: bool | None = None


@dataclass(frozen=True)
class GraphEdge:
    """One edge: ``src`` (input, head, MLP) -> ``dst`` (head via q/k/v, MLP, logits)."""

    src: str
    """``input``, ``L3H1`` or ``MLP3``."""
    dst: str
    """``L5H2``, ``MLP5`` or ``logits``."""
    via: Via | None = None
    """Which input of a receiving head; None into an MLP or the logits."""
    score: float | None = None
    """The file's score for the edge (an attribution, ACDC's effect size, a measured effect)."""
    in_graph: bool = True
    """Whether the file puts the edge in the circuit."""
    seq_idx: int | None = None
    """auto-circuit's token index, when the file gives one."""
    at: str | None = None
    """circuitspec's named position, when known (only from circuitspec's own results)."""

    @property
    def key(self) -> tuple[str, str, str | None]:
        return (self.src, self.dst, self.via)

    @property
    def has_score(self) -> bool:
        return self.score is not None and not math.isnan(self.score)


@dataclass(frozen=True)
class ScoredGraph:
    """A circuit file's content: its edges in circuitspec names, and what reading it cost."""

    source: str
    """The file it was read from (or ``<export>``)."""
    format: str
    """One of :data:`FORMATS`."""
    edges: tuple[GraphEdge, ...]
    shape: GraphShape = GraphShape()
    notes: tuple[Note, ...] = ()
    has_membership: bool = True
    """False when the file only scores edges (then a selection must pick the circuit)."""
    has_scores: bool = True
    """False when the file only says which edges are in the circuit."""
    nodes_in_graph: tuple[str, ...] = field(default=())
    """Heads/MLPs the file lists as circuit nodes (EAP-IG), in circuitspec names."""


def component(kind: str, layer: int | None = None, head: int | None = None) -> str:
    """circuitspec's name for a component: ``input``, ``L3H1``, ``MLP3``, ``logits``."""
    if kind in ("head", "mlp"):
        return format_member(kind, layer, head)  # type: ignore[arg-type]
    return kind


def parse_component(name: str) -> tuple[str, int | None, int | None]:
    """``"L3H1"`` -> ``("head", 3, 1)``, ``"MLP3"`` -> ``("mlp", 3, None)``, ``"input"`` ..."""
    m = _COMPONENT.match(name)
    if m is None:
        raise ValueError(f"not a component name: {name!r}")
    if m.group(1) is not None:
        return "head", int(m.group(1)), int(m.group(2))
    if m.group(3) is not None:
        return "mlp", int(m.group(3)), None
    return name, None, None


def layer_of(name: str) -> int:
    """The forward-pass layer of a component; input is -1, logits after every layer."""
    kind, layer, _ = parse_component(name)
    if kind == "input":
        return -1
    if kind == "logits":
        return 10**9
    assert layer is not None
    return layer


def check_fits(graph: ScoredGraph, n_layers: int, n_heads: int, model: str) -> None:
    """Raise FormatError naming the file if its shape or any component is outside the model."""
    shape = graph.shape
    if shape.n_layers is not None and shape.n_heads is not None and (
            (shape.n_layers, shape.n_heads) != (n_layers, n_heads)):
        raise FormatError(
            f"{graph.source}: the file is for a model with {shape.n_layers} layers x "
            f"{shape.n_heads} heads, but {model} has {n_layers} x {n_heads}; "
            "import it with the model it was made for")
    for edge in graph.edges:
        for name in (edge.src, edge.dst):
            kind, layer, head = parse_component(name)
            if layer is not None and layer >= n_layers:
                raise FormatError(f"{graph.source}: edge {edge.src}->{edge.dst}: {model} has "
                                  f"layers 0-{n_layers - 1}")
            if head is not None and head >= n_heads:
                raise FormatError(f"{graph.source}: edge {edge.src}->{edge.dst}: {model} has "
                                  f"heads 0-{n_heads - 1} in each layer")


def select_edges(graph: ScoredGraph, *, top_k: int | None = None, threshold: float | None = None,
                 in_graph: bool = False) -> tuple[tuple[GraphEdge, ...], Note]:
    """The circuit's edges: top-k or |score| >= threshold (absolute scores, as EAP-IG), or the
    file's own membership; by default membership, when the file has it."""
    chosen = [x for x in (top_k is not None, threshold is not None, in_graph) if x]
    if len(chosen) > 1:
        raise FormatError("give at most one of --top-k, --threshold and --in-graph")
    scored = [e for e in graph.edges if e.has_score]
    if top_k is not None or threshold is not None:
        if not scored:
            raise FormatError(f"{graph.source}: the file has no edge scores, so --top-k and "
                              "--threshold cannot rank it; use --in-graph")
        ranked = sorted(scored, key=lambda e: -abs(e.score or 0.0))
        if top_k is not None:
            if top_k < 1 or top_k > len(ranked):
                raise FormatError(f"--top-k {top_k}: {graph.source} scores {len(ranked)} edges; "
                                  f"choose 1-{len(ranked)}")
            picked = ranked[:top_k]
            how = f"the {top_k} edges with the largest |score| (of {len(ranked)} scored)"
        else:
            picked = [e for e in ranked if abs(e.score or 0.0) >= (threshold or 0.0)]
            how = f"the {len(picked)} edges with |score| >= {threshold} (of {len(ranked)} scored)"
        return tuple(picked), Note("assumed", f"circuit = {how}", len(picked))
    if not graph.has_membership:
        raise FormatError(f"{graph.source}: the file scores edges but does not say which are in "
                          "the circuit; choose them with --top-k K or --threshold T")
    picked = [e for e in graph.edges if e.in_graph]
    if not picked:
        raise FormatError(f"{graph.source}: no edge is in the circuit (in_graph is false "
                          "everywhere); choose edges by score with --top-k K or --threshold T")
    return tuple(picked), Note("kept", f"circuit = the {len(picked)} edges the file marks in the "
                                       "circuit", len(picked))


def counted(notes: Iterable[Note]) -> list[str]:
    """Printable lines, one per note."""
    return [n.line() for n in notes]
