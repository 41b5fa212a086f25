"""The circuit a hypothesis describes, as the frozen graph every stage reads.

:class:`Node` groups heads and MLPs under a role, :class:`Edge` joins a sender group to a
receiver group's q, k or v at a position (or to the logits), and :class:`Circuit` holds
both; :meth:`circuitspec.spec.schema.Hypothesis.circuit` builds it from a file.
"""

from __future__ import annotations

from dataclasses import dataclass

from circuitspec.spec.heads import Head

__all__ = ["Circuit", "Edge", "Node", "default_sign"]


def default_sign(role: str) -> str:
    """The sign an edge's effect is expected to have unless the file says: patching a sender
    out lowers the logit difference (negative), except from a negative name mover (positive)."""
    return "positive" if role == "negative_name_mover" else "negative"


@dataclass(frozen=True)
class Node:
    """A group of heads (layer, head) and MLPs (layer) with one role."""

    name: str
    role: str
    heads: tuple[Head, ...]
    mlps: tuple[int, ...] = ()

    @property
    def layers(self) -> list[int]:
        return [lay for lay, _ in self.heads] + list(self.mlps)


@dataclass(frozen=True)
class Edge:
    """Sender group -> receiver group's q/k/v at a position (or -> logits, via None)."""

    sender: str
    receiver: str
    via: str | None
    at: str
    sign: str = "negative"
    min_effect: float = 0.05

    @property
    def name(self) -> str:
        target = self.receiver if self.via is None else f"{self.receiver}.{self.via}"
        return f"{self.sender}->{target}@{self.at}"


@dataclass(frozen=True)
class Circuit:
    nodes: dict[str, Node]
    edges: tuple[Edge, ...]

    def heads(self) -> set[Head]:
        return {h for node in self.nodes.values() for h in node.heads}

    def mlps(self) -> set[int]:
        return {m for node in self.nodes.values() for m in node.mlps}
