"""The random-circuit null: how faithful are circuits drawn at random?

A faithfulness of 0.9 means little if random circuits of the same size reach 0.8.
Both levels draw ``n_random`` circuits with as many heads as the hypothesis:

- node level (:func:`null_distribution`): random head sets run normally, every
  other head ablated;
- edge level (:func:`edge_null_distribution`): the hypothesis' heads mapped
  one-to-one onto random heads, keeping its wiring.

The summary gives the random circuits' mean and 5/50/95 percentiles, the fraction
the real circuit beats and the p-value ``(1 + #random >= real) / (1 + n)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from circuitspec.ablation import AblationRunner, Head, Keep

if TYPE_CHECKING:
    from circuitspec.edge_ablation import Wire

__all__ = ["NullSummary", "edge_null_distribution", "null_distribution"]


@dataclass(frozen=True)
class NullSummary:
    """Faithfulness of random circuits of the same size, against the real circuit's."""

    n_random: int
    n_heads: int
    real: float
    random_mean: float
    random_quantiles: dict[str, float]  # "5", "50", "95" percent
    fraction_beaten: float
    p_value: float
    random: tuple[float, ...] = ()

    @classmethod
    def of(cls, values: Sequence[float], real: float, n_heads: int) -> NullSummary:
        arr = np.asarray(values, dtype=float)
        n = len(arr)
        q = np.quantile(arr, [0.05, 0.5, 0.95]) if n else [math.nan] * 3
        return cls(
            n_random=n,
            n_heads=n_heads,
            real=float(real),
            random_mean=float(arr.mean()) if n else math.nan,
            random_quantiles={"5": float(q[0]), "50": float(q[1]), "95": float(q[2])},
            fraction_beaten=float(np.mean(real > arr)) if n else math.nan,
            p_value=float((1 + np.sum(arr >= real)) / (1 + n)),
            random=tuple(float(v) for v in arr),
        )

    def to_dict(self) -> dict[str, Any]:
        from circuitspec.scores import _jsonable

        return _jsonable(asdict(self))


def null_distribution(
    runner: AblationRunner,
    circuit: Sequence[Head] | frozenset[Head],
    *,
    n_random: int = 100,
    seed: int = 0,
    real: float | None = None,
    mlp_keep: Sequence[int] | None = None,
) -> NullSummary:
    """Faithfulness of ``n_random`` random circuits with as many heads as ``circuit``.

    Random circuits run at every position; ``real`` defaults to the circuit's own
    faithfulness at every position.
    """
    size = len(set(circuit))
    heads = sorted(runner.all_heads)
    rng = np.random.default_rng(seed)
    picks = [[heads[j] for j in rng.choice(len(heads), size=size, replace=False)]
             for _ in range(n_random)]
    fm = runner.clean.double().numpy().mean()
    values = runner.run([Keep.of(p, mlp_keep) for p in picks]).double().numpy().mean(1) / fm
    if real is None:
        real = float(runner.run([Keep.of(circuit, mlp_keep)])[0].double().mean() / fm)
    return NullSummary.of(values, real, size)


def edge_null_distribution(
    runner: AblationRunner,
    wires: Sequence[Wire],
    *,
    n_random: int = 20,
    seed: int = 0,
    real: float | None = None,
) -> NullSummary:
    """Edge-level faithfulness of random circuits wired like ``wires``.

    Each random circuit maps the circuit's heads one-to-one onto heads drawn uniformly
    from the model and keeps every wire between the images (a pair that lands in the
    wrong layer order carries nothing, as in any wire); ``real`` defaults to the
    circuit's own. Each sample costs a few passes, so the default count is small.
    """
    from circuitspec.edge_ablation import Wire, edge_level_logit_diff

    heads = sorted({h for w in wires for h in (*w.senders, *w.receivers)})
    pool = sorted(runner.all_heads)
    rng = np.random.default_rng(seed)
    fm = float(runner.clean.double().mean())
    values = []
    for _ in range(n_random):
        image = dict(zip(heads, (pool[j] for j in rng.choice(len(pool), len(heads), replace=False)),
                         strict=True))
        moved = [Wire(tuple(image[h] for h in w.senders), tuple(image[h] for h in w.receivers), w.via,
                      w.positions) for w in wires]
        values.append(float(edge_level_logit_diff(runner, moved).double().mean()) / fm)
    if real is None:
        real = float(edge_level_logit_diff(runner, wires).double().mean()) / fm
    return NullSummary.of(values, real, len(heads))
