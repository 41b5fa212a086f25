"""What a run costs, stage by stage: wall time and work in forward-equivalents.

Work is counted where it is done, in *token-layers*: a pass over ``rows`` prompts of
``positions`` tokens through ``layers`` blocks adds ``rows * positions * layers``. A
resumed pass counts only the blocks it runs, a row-sparse one (the fast engine's passes
C and D) only the rows it recomputes. Dividing by the token-layers of one full forward
over the run's prompts gives *forward-equivalents*: "this stage cost as much as k
forward passes of the whole dataset". Attention's quadratic term and the unembedding
are ignored, so the unit is blocks, not FLOPs.

One :class:`Work` is made per run and passed to the engines and runners that do the
work (no globals); ``with work.at("edges"):`` attributes time and work to a stage. Nested
stages take their share from the enclosing one, so the stages add up to the whole.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

__all__ = ["Work"]


@dataclass
class Work:
    """Seconds and token-layers per stage of one run."""

    per_forward: int
    """Token-layers of one full forward pass over the run's prompts (the unit)."""
    token_layers: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    _stack: list[tuple[str, float]] = field(default_factory=list)

    @property
    def stage(self) -> str:
        return self._stack[-1][0] if self._stack else "other"

    def add(self, rows: int, positions: int, layers: int) -> None:
        """A pass over ``rows`` x ``positions`` tokens through ``layers`` blocks."""
        if rows > 0 and positions > 0 and layers > 0:
            key = self.stage
            self.token_layers[key] = self.token_layers.get(key, 0) + int(rows) * int(positions) * int(layers)

    def _charge(self, name: str, since: float, now: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + (now - since)

    @contextmanager
    def at(self, name: str) -> Iterator[None]:
        """Attribute time and work inside the block to stage ``name``."""
        now = time.perf_counter()
        if self._stack:  # the enclosing stage stops its clock
            outer, since = self._stack[-1]
            self._charge(outer, since, now)
        self._stack.append((name, now))
        self.seconds.setdefault(name, 0.0)
        try:
            yield
        finally:
            end = time.perf_counter()
            _, since = self._stack.pop()
            self._charge(name, since, end)
            if self._stack:
                self._stack[-1] = (self._stack[-1][0], end)

    def forward_equivalents(self) -> dict[str, float]:
        """Work per stage in full forwards over the run's prompts (stages with none: 0)."""
        names = list(dict.fromkeys([*self.seconds, *self.token_layers]))
        return {k: self.token_layers.get(k, 0) / max(1, self.per_forward) for k in names}

    @property
    def total(self) -> float:
        return sum(self.token_layers.values()) / max(1, self.per_forward)
