"""The per-edge null: the same patch from random, layer-matched sender groups.

An edge's effect is judged against what ``n`` random sender groups achieve along the
same path into the same receiver: each group has the sender's size, its heads drawn from
the senders' layers (:class:`~circuitspec.scoring.nulls.LayerMatched`), none of them in
the hypothesis; MLP members are replaced by MLP layers outside the hypothesis below the
receiver. Every edge draws from its own stream (run seed and edge name). The draws run
as batched sweeps of the engine, so 100 of them cost about one patched pass.

The verdict needs the whole bootstrap interval of the effect beyond the null's
``[alpha/2, 1 - alpha/2]`` quantile band in the claimed direction, and ``p <= alpha``;
a verified edge that fails either becomes inconclusive.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from circuitspec.scoring.nulls import (
    LayerMatched,
    MonteCarlo,
    NullDraws,
    more_extreme,
    run_null,
    stream,
)

if TYPE_CHECKING:
    from circuitspec.engine import Receiver, Sender

__all__ = ["EdgeNullSetup", "edge_null", "judge_with_null"]

Head = tuple[int, int]


@dataclass(frozen=True)
class EdgeNullSetup:
    """What an edge's null needs to know about the model and the hypothesis."""

    n_layers: int
    n_heads: int
    circuit_heads: frozenset[Head]
    circuit_mlps: frozenset[int]
    seed: int
    rule: MonteCarlo


def _effects(patched: np.ndarray, clean: np.ndarray, corrupt: np.ndarray) -> np.ndarray:
    return (patched.mean(1) - clean.mean()) / (clean.mean() - corrupt.mean())


def edge_null(
    name: str,
    sender: Sender,
    receiver: Receiver,
    real: float,
    sign: str | None,
    sweep: Callable[[list[Sender]], np.ndarray],
    clean: np.ndarray,
    corrupt: np.ndarray,
    setup: EdgeNullSetup,
) -> NullDraws | None:
    """The layer-matched null of one edge; None when the model has too few spare heads."""
    below = setup.n_layers if receiver.is_logits else min(receiver.layers)
    pool = LayerMatched(setup.n_layers, setup.n_heads, setup.circuit_heads)
    spare_mlps = [m for m in range(min(below, setup.n_layers)) if m not in setup.circuit_mlps]
    if not sender.heads and not sender.mlps:
        return None
    if not pool.feasible(sender.heads, below) or len(spare_mlps) < len(sender.mlps):
        return None
    rng = stream(setup.seed, f"edge:{name}")

    def draw(k: int) -> tuple[np.ndarray, int]:
        groups: list[Sender] = []
        off = 0
        for _ in range(k):
            image, shifted = pool.draw(sender.heads, rng, below)
            mlps = sorted(int(m) for m in rng.choice(spare_mlps, size=len(sender.mlps), replace=False))
            groups.append(replace(sender, heads=tuple(sorted(image.values())), mlps=tuple(mlps)))
            off += shifted
        return _effects(sweep(groups), clean, corrupt), off

    return run_null(draw, real, more_extreme(real, sign), setup.rule)


def judge_with_null(word: str, reason: str, ci: Sequence[float], null: NullDraws | None,
                    sign: str | None, alpha: float) -> tuple[str, str]:
    """Downgrade a verified edge to inconclusive unless its interval clears the null's band
    in the claimed direction and its p-value is at most ``alpha``."""
    if null is None or word != "verified":
        return word, reason
    low, high = float(ci[0]), float(ci[1])
    clears = {"negative": high < null.low, "positive": low > null.high}.get(
        sign or "any", high < null.low or low > null.high)
    if clears and null.p_value <= alpha:
        return word, reason + (f" Its interval clears the band [{null.low:.3g}, {null.high:.3g}] of "
                               f"{null.n} layer-matched random sender groups (p = {null.p_value:.3g}).")
    why = (f"the interval [{low:.3g}, {high:.3g}] does not clear" if not clears else
           f"p = {null.p_value:.3g} > {alpha:g} against")
    return "inconclusive", reason + (
        f" But {why} the band [{null.low:.3g}, {null.high:.3g}] of {null.n} layer-matched random "
        f"sender groups (p = {null.p_value:.3g}), so this edge is not distinguishable from chance.")
