"""The prompts a circuit is tested on: paired clean/corrupted token sequences.

A :class:`Dataset` is what every engine and score consumes. Each prompt has a clean
and a corrupted token sequence of the same length (so positions align), a correct
and an incorrect answer token, and named positions (``END``, ``IO``, ``S1``,
``S1+1``, ``S2``, ...) resolved to an index per prompt. Prompts of different
lengths are allowed; engines run each length as its own batch, never padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from circuitspec.errors import InvalidArgument


@dataclass(frozen=True)
class Dataset:
    """Paired clean/corrupted prompts with answers and named positions."""

    clean: tuple[tuple[int, ...], ...]
    corrupt: tuple[tuple[int, ...], ...]
    correct: tuple[int, ...]
    incorrect: tuple[int, ...]
    positions: dict[str, tuple[int, ...]]
    template: tuple[int, ...]  # template id per prompt: mean ablation averages within a template
    prepend_bos: bool
    clean_text: tuple[str, ...] = ()
    corrupt_text: tuple[str, ...] = ()
    notes: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.clean)
        for name in ("corrupt", "correct", "incorrect", "template"):
            if len(getattr(self, name)) != n:
                raise InvalidArgument(f"dataset field {name} has {len(getattr(self, name))} rows, not {n}")
        for c, k in zip(self.clean, self.corrupt, strict=True):
            if len(c) != len(k):
                raise InvalidArgument("clean and corrupted prompts must have the same token length")
        if "END" not in self.positions:
            raise InvalidArgument("a dataset needs the END position")

    def __len__(self) -> int:
        return len(self.clean)

    @property
    def position_names(self) -> list[str]:
        return list(self.positions)

    def subset(self, index: Sequence[int]) -> Dataset:
        """The prompts at ``index``, in that order (used by bootstrap and chunking)."""
        pick = [int(i) for i in index]

        def take(seq: Sequence[Any]) -> tuple[Any, ...]:
            return tuple(seq[i] for i in pick) if seq else ()

        return Dataset(
            clean=take(self.clean),
            corrupt=take(self.corrupt),
            correct=take(self.correct),
            incorrect=take(self.incorrect),
            positions={k: take(v) for k, v in self.positions.items()},
            template=take(self.template),
            prepend_bos=self.prepend_bos,
            clean_text=take(self.clean_text),
            corrupt_text=take(self.corrupt_text),
            notes=dict(self.notes),
        )

    def length_groups(self) -> list[list[int]]:
        """Indices of prompts grouped by token length, in first-seen order."""
        groups: dict[int, list[int]] = {}
        for i, toks in enumerate(self.clean):
            groups.setdefault(len(toks), []).append(i)
        return list(groups.values())
