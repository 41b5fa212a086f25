"""A keep-set: what runs normally in one ablated run (heads, MLP layers, circuit heads' positions).

Everything a keep-set does not name is ablated (:mod:`circuitspec.ablation.replacement` says
into what); ``None`` means everything of that kind runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from circuitspec.spec.heads import Head

__all__ = ["Keep"]


@dataclass(frozen=True)
class Keep:
    """What runs normally in one ablated run; ``None`` means everything of that kind."""
    heads: frozenset[Head] | None = None
    mlps: frozenset[int] | None = None
    positions: tuple[tuple[Head, tuple[str, ...]], ...] = ()  # circuit head -> its positions

    @staticmethod
    def of(
        heads: Iterable[Head] | None = None,
        mlps: Iterable[int] | None = None,
        circuit_positions: Mapping[Head, Sequence[str]] | None = None,
    ) -> Keep:
        pos = tuple(
            sorted((tuple(h), tuple(p)) for h, p in (circuit_positions or {}).items())  # type: ignore[misc]
        )
        return Keep(
            None if heads is None else frozenset((int(L), int(h)) for L, h in heads),
            None if mlps is None else frozenset(int(m) for m in mlps),
            pos,  # type: ignore[arg-type]
        )
