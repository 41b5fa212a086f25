"""Layer-matched nulls: what random heads of the same layers would score.

A patched edge or an ablated circuit means something only beside what random stand-ins
of the same shape achieve. The stand-ins here are *layer-matched*: every hypothesis head
is mapped one-to-one onto a random head of its own layer that is not in the hypothesis,
so a null circuit has the same layer profile (and the same position in the residual
stream) as the real one. Where a layer has fewer spare heads than the hypothesis uses
there, the shortfall comes from the nearest layers that still lie below ``below`` (the
receiver's first layer), nearer first, lower first on ties; the draw records how many
heads were placed off their layer (``off_layer``).

Each null has its own random stream, derived from the run seed and a name (the edge's,
or ``circuit``), so adding an edge or reordering them changes no other edge's draws.

The p-value counts the draws at least as extreme as the real value, with the +1
correction: ``p = (1 + b) / (1 + n)``. Draws come in batches; with ``n_max > n_min``
the sequential rule stops once the decision at ``alpha`` of the full ``n_max``-draw test
is settled whatever the remaining draws give (the Besag-Clifford idea: stop when the
verdict is decided), so the decision is the fixed-``n_max`` test's, and the p-value
reported is that of the draws made. ``n_min`` draws are always made.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from circuitspec.records.edges import NullDistribution
from circuitspec.spec.heads import Head

__all__ = [
    "LayerMatched",
    "MonteCarlo",
    "NullDraws",
    "more_extreme",
    "p_value",
    "run_null",
    "stream",
]



def stream(seed: int, name: str) -> np.random.Generator:
    """A random stream of its own for ``name`` in the run with ``seed`` (stable across runs)."""
    digest = int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "little")
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, digest]))


def p_value(extreme: int, n: int) -> float:
    """(1 + extreme) / (1 + n): the Monte Carlo p-value with the +1 correction."""
    return (1 + int(extreme)) / (1 + int(n))


@dataclass(frozen=True)
class LayerMatched:
    """Spare heads per layer: the model's heads less the hypothesis' (``excluded``)."""

    n_layers: int
    n_heads: int
    excluded: frozenset[Head]

    def spare(self, layer: int) -> list[Head]:
        return [(layer, h) for h in range(self.n_heads) if (layer, h) not in self.excluded]

    def feasible(self, heads: Iterable[Head], below: int | None = None) -> bool:
        """Whether enough spare heads lie below ``below`` to map ``heads`` one-to-one."""
        top = self.n_layers if below is None else below
        return len(set(heads)) <= sum(len(self.spare(L)) for L in range(top))

    def draw(self, heads: Sequence[Head], rng: np.random.Generator,
             below: int | None = None) -> tuple[dict[Head, Head], int]:
        """A random one-to-one map of ``heads`` onto spare heads, same layer where possible.

        Returns the map and how many heads had to go to another layer.
        """
        top = self.n_layers if below is None else below
        by_layer: dict[int, list[Head]] = {}
        for h in sorted(set(heads)):
            by_layer.setdefault(h[0], []).append(h)
        used: set[Head] = set()
        image: dict[Head, Head] = {}
        short: list[tuple[int, Head]] = []
        for layer, members in by_layer.items():
            pool = self.spare(layer) if layer < top else []
            picks = [pool[j] for j in rng.permutation(len(pool))[: len(members)]]
            image.update(zip(members, picks, strict=False))
            used.update(picks)
            short += [(layer, h) for h in members[len(picks):]]
        for layer, h in short:
            for other in sorted(range(top), key=lambda L: (abs(L - layer), L)):
                pool = [x for x in self.spare(other) if x not in used]
                if pool:
                    pick = pool[int(rng.integers(len(pool)))]
                    image[h] = pick
                    used.add(pick)
                    break
            else:
                raise ValueError(f"not enough spare heads below layer {top} for {len(set(heads))} heads")
        return image, len(short)


@dataclass(frozen=True)
class MonteCarlo:
    """How many null draws: at least ``n_min``, at most ``n_max``, ``batch`` per pass."""

    n_min: int = 100
    n_max: int = 100
    batch: int = 100
    alpha: float = 0.05

    def __post_init__(self) -> None:
        if self.n_min < 1 or self.n_max < self.n_min or self.batch < 1:
            raise ValueError(f"need 1 <= n_min <= n_max and batch >= 1, got {self}")

    def decided(self, extreme: int, n: int) -> bool:
        """Whether the fixed-``n_max`` test's decision at ``alpha`` is settled after ``n`` draws."""
        if n >= self.n_max:
            return True
        if n < self.n_min:
            return False
        worst = p_value(extreme + self.n_max - n, self.n_max)  # every remaining draw extreme
        best = p_value(extreme, self.n_max)  # none of them
        return worst <= self.alpha or best > self.alpha


@dataclass(frozen=True)
class NullDraws:
    """The null's values and how the real value compares with them."""

    values: tuple[float, ...]
    real: float
    extreme: int  # draws at least as extreme as ``real``
    low: float  # alpha/2 quantile of the draws
    high: float  # 1 - alpha/2 quantile
    off_layer: int = 0  # heads placed outside their layer over all draws
    nonfinite: int = 0  # draws that were NaN or infinite (counted as extreme, left out of the band)
    layers: tuple[int, ...] | None = None  # per-edge null: the layers its heads came from
    widened: bool | None = None  # per-edge null: beyond the senders' own layers (no per-layer match)
    n_distinct: int | None = None  # per-edge null: distinct groups there were to draw from

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def p_value(self) -> float:
        return p_value(self.extreme, self.n)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else math.nan

    @property
    def fraction_beaten(self) -> float:
        """Fraction of draws that are less extreme than the real value."""
        return 1.0 - self.extreme / self.n if self.n else math.nan

    def summary(self, kind: str = "layer_matched") -> NullDistribution:
        """The draws as results.json reports them: mean, band, n, p-value (the values dropped)."""
        return NullDistribution(self.mean, self.low, self.high, self.n, self.real, self.fraction_beaten,
                                self.p_value, kind, self.off_layer, self.nonfinite, self.layers, self.widened,
                                self.n_distinct)


def run_null(
    draw: Callable[[int], tuple[np.ndarray, int]],
    real: float,
    is_extreme: Callable[[np.ndarray], np.ndarray],
    rule: MonteCarlo,
) -> NullDraws:
    """Draw null values in batches (``draw(k)`` -> ``k`` values and their off-layer count)
    until ``rule`` is decided; count those ``is_extreme`` compared with ``real``. A draw that is
    NaN or infinite counts as extreme (the conservative side) and stays out of the band; so does
    every draw when ``real`` itself is not finite (a NaN is "beaten" by nothing, and counting
    comparisons with it gave p = 1 / (n + 1))."""
    values: list[float] = []
    off = 0
    extreme = 0
    while not rule.decided(extreme, len(values)):
        want = max(rule.n_min - len(values), 0) or rule.batch
        got, shifted = draw(min(want, rule.n_max - len(values)))
        got = np.asarray(got, dtype=np.float64).reshape(-1)
        values += [float(x) for x in got]
        off += shifted
        bad = ~np.isfinite(got)
        if not math.isfinite(real):  # NaN compares false with everything: nothing is beaten
            bad[:] = True
        with np.errstate(invalid="ignore"):
            extreme += int(np.sum(bad | (is_extreme(got) & ~bad)))
    arr = np.asarray(values)
    finite = arr[np.isfinite(arr)]
    a = rule.alpha
    low, high = (float(q) for q in np.quantile(finite, [a / 2, 1 - a / 2])) if finite.size else (math.nan,) * 2
    return NullDraws(tuple(values), float(real), extreme, low, high, off, int(arr.size - finite.size))


def more_extreme(real: float, sign: str | None) -> Callable[[np.ndarray], np.ndarray]:
    """Null effects at least as extreme as ``real`` in the claimed direction (``any``: in size)."""
    if sign == "negative":
        return lambda x: x <= real
    if sign == "positive":
        return lambda x: x >= real
    return lambda x: np.abs(x) >= abs(real)
