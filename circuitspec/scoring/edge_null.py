"""The per-edge null: the same patch from random, layer-matched sender groups.

An edge's effect is judged against what ``n`` random sender groups achieve along the
same path into the same receiver: each group has the sender's size, its heads drawn from
the senders' layers (:class:`~circuitspec.scoring.nulls.LayerMatched`), none of them in
the hypothesis; MLP members are replaced by MLP layers outside the hypothesis below the
receiver. The groups are distinct (drawn without replacement); where the senders' layers
hold too few, the heads widen to the nearest layers below the receiver (:class:`GroupSpace`),
and where the whole model holds fewer than ``n``, all of them are used (``n = N``).
Every edge draws from its own stream (run seed and edge name). The draws run
as batched sweeps of the engine, so 100 of them cost about one patched pass.

The verdict needs the whole bootstrap interval of the effect beyond the null's
``[alpha/2, 1 - alpha/2]`` quantile band in the claimed direction, and ``p <= alpha``;
a verified edge that fails either becomes inconclusive.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from itertools import combinations, islice, product
from typing import TYPE_CHECKING

import numpy as np

from circuitspec.records.fields import Verdict
from circuitspec.scoring.nulls import (
    LayerMatched,
    MonteCarlo,
    NullDraws,
    more_extreme,
    p_value,
    run_null,
    stream,
)
from circuitspec.spec.heads import Head

if TYPE_CHECKING:
    from circuitspec.patching.types import Receiver, Sender

__all__ = ["EdgeNullSetup", "GroupSpace", "edge_null", "group_space", "judge_with_null"]



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


ENUMERATE = 20_000  # at most this many distinct groups: list them all and shuffle; more: rejection


@dataclass(frozen=True)
class GroupSpace:
    """The distinct random sender groups an edge's null draws from (without replacement).

    Layer-matched (``widened`` False): each sender layer's heads go to spare heads of that
    layer. Widened: any heads of ``layers`` (the senders' own layers, then the nearest
    others below the receiver), used when the senders' layers hold fewer than the null's
    draws; when even every layer below the receiver holds fewer, ``size`` is all there are.
    """

    counts: tuple[tuple[int, int], ...]  # (layer, sender heads there)
    layers: tuple[int, ...]
    widened: bool
    pools: tuple[tuple[Head, ...], ...]  # per sender layer (matched) or one pool (widened)
    mlps: tuple[int, ...]  # spare MLP layers below the receiver
    n_mlps: int
    size: int

    def _head_choices(self) -> list[tuple[tuple[Head, ...], int]]:
        if self.widened:
            return [(tuple(self.pools[0]), sum(c for _, c in self.counts))]
        return [(pool, c) for pool, (_, c) in zip(self.pools, self.counts, strict=True)]

    def _all(self) -> list[tuple[tuple[Head, ...], tuple[int, ...]]]:
        parts = [list(combinations(pool, c)) for pool, c in self._head_choices()]
        out = []
        for heads in product(*parts):
            for mlps in combinations(self.mlps, self.n_mlps):
                out.append((tuple(sorted(h for part in heads for h in part)), mlps))
        return out

    def _one(self, rng: np.random.Generator) -> tuple[tuple[Head, ...], tuple[int, ...]]:
        heads: list[Head] = []
        for pool, c in self._head_choices():
            heads += [pool[j] for j in rng.choice(len(pool), size=c, replace=False)]
        mlps = [self.mlps[j] for j in rng.choice(len(self.mlps), size=self.n_mlps, replace=False)]
        return tuple(sorted(heads)), tuple(sorted(mlps))

    def off_layer(self, heads: Sequence[Head]) -> int:
        """Heads of a group beyond their sender layer's count (placed in another layer)."""
        got = Counter(h[0] for h in heads)
        return sum(c for _, c in self.counts) - sum(min(c, got[L]) for L, c in self.counts)

    def sampler(self, rng: np.random.Generator) -> Iterator[tuple[tuple[Head, ...], tuple[int, ...]]]:
        """Distinct groups in random order, ``size`` of them at most."""
        if self.size <= ENUMERATE:
            every = self._all()
            for j in rng.permutation(len(every)):
                yield every[int(j)]
            return
        seen: set[tuple[tuple[Head, ...], tuple[int, ...]]] = set()
        while True:
            g = self._one(rng)
            if g not in seen:
                seen.add(g)
                yield g


def group_space(sender: Sender, receiver: Receiver, setup: EdgeNullSetup, need: int) -> GroupSpace | str:
    """Where an edge's null draws ``need`` distinct groups from, or why it has none."""
    below = min(setup.n_layers, setup.n_layers if receiver.is_logits else min(receiver.layers))
    if not sender.heads and not sender.mlps:
        return "the sender group is empty"
    spare_mlps = tuple(m for m in range(below) if m not in setup.circuit_mlps)
    if len(spare_mlps) < len(sender.mlps):
        return (f"the model has {len(spare_mlps)} MLP layer(s) outside the hypothesis below the receiver, "
                f"fewer than the sender's {len(sender.mlps)}")
    pool = LayerMatched(setup.n_layers, setup.n_heads, setup.circuit_heads)
    counts = tuple(sorted(Counter(h[0] for h in set(sender.heads)).items()))
    own = tuple(L for L, _ in counts)
    k = sum(c for _, c in counts)
    n_mlp = math.comb(len(spare_mlps), len(sender.mlps))
    matched = math.prod(math.comb(len(pool.spare(L)) if L < below else 0, c) for L, c in counts) * n_mlp
    if matched >= need or not k:
        return GroupSpace(counts, own, False, tuple(tuple(pool.spare(L)) for L in own), spare_mlps,
                          len(sender.mlps), matched)
    order = sorted(range(below), key=lambda L: (min(abs(L - s) for s in own), L))
    if not order:
        return "the receiver is in layer 0: no head can send to it"
    first = max(1, len([L for L in order if L in own]))
    for end in range(first, len(order) + 1):
        layers = tuple(sorted(order[:end]))
        heads = tuple(h for L in layers for h in pool.spare(L))
        size = math.comb(len(heads), k) * n_mlp
        if size >= need or end == len(order):
            break
    if size == 0:
        return (f"the model has too few heads outside the hypothesis below layer {below} "
                f"for a random group of {k}")
    return GroupSpace(counts, layers, True, (heads,), spare_mlps, len(sender.mlps), size)


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
) -> NullDraws | str:
    """The edge's null over distinct random sender groups; a sentence saying why not when
    the model has none to offer."""
    rule = setup.rule
    space = group_space(sender, receiver, setup, rule.n_min)
    if isinstance(space, str):
        return space
    if space.size < rule.n_max:  # never more draws than distinct groups; fewer than n_min: all
        n_min = min(rule.n_min, space.size)
        rule = MonteCarlo(n_min, space.size, min(rule.batch, space.size), rule.alpha)
    groups_left = space.sampler(stream(setup.seed, f"edge:{name}"))

    def draw(k: int) -> tuple[np.ndarray, int]:
        groups: list[Sender] = []
        off = 0
        for heads, mlps in islice(groups_left, k):
            groups.append(replace(sender, heads=heads, mlps=mlps))
            off += space.off_layer(heads)
        return _effects(sweep(groups), clean, corrupt), off

    null = run_null(draw, real, more_extreme(real, sign), rule)
    return replace(null, layers=space.layers, widened=space.widened, n_distinct=space.size)


def judge_with_null(word: Verdict, reason: str, ci: Sequence[float], null: NullDraws | str | None,
                    sign: str | None, alpha: float) -> tuple[Verdict, str]:
    """Downgrade a verified edge to inconclusive unless its interval clears the null's band
    in the claimed direction and its p-value is at most ``alpha``. ``null`` a sentence: the
    edge has no null (that is why); None: the run asked for none (``n_null_edges=0``)."""
    if word != "verified":
        return word, reason
    if null is None:
        return word, reason + " It was not tested against a null of random sender groups (n_null_edges=0)."
    if isinstance(null, str):
        return "inconclusive", reason + f" But it has no null to be judged against: {null}."
    if p_value(0, null.n) > alpha:
        only = (f"only {null.n} distinct random sender groups exist" if null.n_distinct == null.n else
                f"it has only {null.n} draws")
        return "inconclusive", reason + (
            f" But the null is too small: {only}, so p cannot go below 1/{null.n + 1} = "
            f"{p_value(0, null.n):.3g} > {alpha:g}.")
    low, high = float(ci[0]), float(ci[1])
    clears = {"negative": high < null.low, "positive": low > null.high}.get(
        sign or "any", high < null.low or low > null.high)
    groups = "widened (not layer-matched)" if null.widened else "layer-matched"
    if clears and null.p_value <= alpha:
        return word, reason + (f" Its interval clears the band [{null.low:.3g}, {null.high:.3g}] of "
                               f"{null.n} {groups} random sender groups (p = {null.p_value:.3g}).")
    why = (f"the interval [{low:.3g}, {high:.3g}] does not clear" if not clears else
           f"p = {null.p_value:.3g} > {alpha:g} against")
    return "inconclusive", reason + (
        f" But {why} the band [{null.low:.3g}, {null.high:.3g}] of {null.n} {groups} random "
        f"sender groups (p = {null.p_value:.3g}), so this edge is not distinguishable from chance.")
