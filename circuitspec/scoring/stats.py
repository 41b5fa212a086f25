"""Uncertainty and verdicts: percentile bootstrap over prompts, and the three verdict words.

Every number circuitspec reports is a statistic of per-prompt values (a mean logit
difference, a ratio of two means, a gap between two means). Its uncertainty comes from
resampling *prompts* with replacement; when a statistic combines several per-prompt
arrays measured on the same prompts (faithfulness = mean(F(C)) / mean(F(M))), they are
resampled jointly so the pairing survives. The interval is the percentile interval of
the resampled statistic.

A claim then gets one of three words: ``verified`` when the whole interval clears the
threshold in the claimed direction, ``refuted`` when the whole interval lies on the wrong
side, ``inconclusive`` when it straddles. All functions here are pure and seeded: the
same inputs give the same interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from statistics import NormalDist
from typing import Literal

import numpy as np

from circuitspec.errors import InvalidArgument
from circuitspec.records.fields import VERDICTS, Verdict

__all__ = [
    "Direction",
    "VERDICTS",
    "bootstrap_ci",
    "bootstrap_paired_ci",
    "bootstrap_ratio_ci",
    "band_verdict",
    "cluster_widening",
    "beside_estimate",
    "excludes_estimate",
    "nonfinite_resamples",
    "t_quantile",
    "verdict",
]


# at_least / at_most: a score against a threshold (faithfulness >= 0.8, gap <= 0.15).
# negative / positive / any: an effect of size at least `threshold` in that direction.
Direction = Literal["at_least", "at_most", "negative", "positive", "any"]

ArrayLike = Sequence[float] | np.ndarray


def _as_array(values: ArrayLike | object) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor; avoid importing torch here
        values = values.detach().cpu().numpy()  # type: ignore[union-attr]
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise InvalidArgument(f"need a non-empty 1-d array of per-prompt values, got shape {arr.shape}")
    return arr


def _percentile_interval(stats: np.ndarray, level: float) -> tuple[float, float]:
    if not 0.0 < level < 1.0:
        raise InvalidArgument(f"level must lie strictly between 0 and 1, got {level}")
    # A non-finite resample (a denominator of 0) is not dropped: an interval conditioned on
    # the finite ones would claim more than the data give, so the interval is not finite
    # and any verdict on it inconclusive. nonfinite_resamples() counts them.
    if stats.size == 0 or not np.isfinite(stats).all():
        return (float("nan"), float("nan"))
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(stats, [alpha, 1.0 - alpha])
    return (float(low), float(high))


def bootstrap_paired_ci(
    arrays: Sequence[ArrayLike],
    statistic: Callable[..., np.ndarray],
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    clusters: Sequence[int] | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap CI of ``statistic`` over prompts, resampling all arrays jointly.

    ``arrays`` are per-prompt values measured on the same prompts (equal lengths).
    ``statistic`` receives one resampled ``[n_resamples, n_prompts]`` array per input and
    returns ``[n_resamples]`` values, e.g. ``lambda a, b: a.mean(1) / b.mean(1)``.
    ``clusters`` (one label per prompt, e.g. its template): resample whole clusters with
    replacement instead of prompts, since prompts of one template are not independent.
    """
    stats = _resampled(arrays, statistic, n_resamples=n_resamples, seed=seed, clusters=clusters)
    low, high = _percentile_interval(stats, level)
    if clusters is None or not (np.isfinite(low) and np.isfinite(high)):
        return (low, high)
    # With few clusters the percentile interval is too narrow: the bootstrap variance of a
    # mean over G clusters is (G - 1) / G of the usual estimate, and its spread is normal-like
    # where a t with G - 1 degrees of freedom is due. With 8-15 template pairs it covered
    # 88-93 % instead of 95 % in simulation; widened around the estimate by
    # cluster_widening(G) it covers 94.5-96 % (see docs/semantics.md).
    data = [_as_array(a) for a in arrays]
    with np.errstate(divide="ignore", invalid="ignore"):
        estimate = float(np.asarray(statistic(*(d[None, :] for d in data)), dtype=np.float64).reshape(-1)[0])
    if not np.isfinite(estimate):
        return (float("nan"), float("nan"))
    n_clusters = len(set(np.asarray(clusters).tolist()))
    if n_clusters < 2:  # one cluster says nothing about the spread between clusters
        return (float("nan"), float("nan"))
    c = cluster_widening(n_clusters, level)
    return (min(low, estimate - c * (estimate - low)), max(high, estimate + c * (high - estimate)))


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile (p > 1/2) of Student's t with integer ``df`` degrees of freedom, from
    its closed-form CDF (no scipy): P(|T| < t) is a finite series in theta = arctan(t / sqrt(df))."""
    if df < 1 or not 0.5 < p < 1.0:
        raise InvalidArgument(f"t quantile needs df >= 1 and 1/2 < p < 1, got df={df}, p={p}")

    def central(t: float) -> float:  # P(|T| < t)
        theta = math.atan(t / math.sqrt(df))
        c2 = math.cos(theta) ** 2
        if df % 2:  # odd
            term, total = 1.0, 1.0 if df > 1 else 0.0
            for k in range(1, (df - 3) // 2 + 1):
                term *= c2 * (2 * k) / (2 * k + 1)
                total += term
            return (2 / math.pi) * (theta + (math.sin(theta) * math.cos(theta) * total if df > 1 else 0.0))
        term, total = 1.0, 1.0
        for k in range(1, (df - 2) // 2 + 1):
            term *= c2 * (2 * k - 1) / (2 * k)
            total += term
        return math.sin(theta) * total

    target = 2 * p - 1
    lo, hi = 0.0, 1.0
    while central(hi) < target:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if central(mid) < target else (lo, mid)
    return (lo + hi) / 2


def cluster_widening(n_clusters: int, level: float = 0.95) -> float:
    """How much a cluster-bootstrap percentile interval is widened around the estimate:
    sqrt(G / (G - 1)) * t_{G-1} / z at ``level``, G the number of clusters (inf below 2)."""
    if n_clusters < 2:
        return math.inf
    q = 1 - (1 - level) / 2
    return math.sqrt(n_clusters / (n_clusters - 1)) * t_quantile(q, n_clusters - 1) / NormalDist().inv_cdf(q)


def _resampled(arrays: Sequence[ArrayLike], statistic: Callable[..., np.ndarray], *, n_resamples: int,
               seed: int, clusters: Sequence[int] | None) -> np.ndarray:
    """The statistic on ``n_resamples`` resamples: of prompts, or of whole clusters (every
    prompt of a drawn cluster comes along, so resamples vary in length)."""
    data = [_as_array(a) for a in arrays]
    n = data[0].size
    if any(d.size != n for d in data):
        raise InvalidArgument(f"paired arrays must have equal lengths, got {[d.size for d in data]}")
    if n_resamples < 1:
        raise InvalidArgument("n_resamples must be at least 1")
    rng = np.random.default_rng(seed)
    with np.errstate(divide="ignore", invalid="ignore"):
        if clusters is None:
            index = rng.integers(0, n, size=(n_resamples, n))
            return np.asarray(statistic(*(d[index] for d in data)), dtype=np.float64).reshape(-1)
        ids = np.asarray(clusters)
        if ids.size != n:
            raise InvalidArgument(f"clusters has {ids.size} labels for {n} prompts")
        _, inverse = np.unique(ids, return_inverse=True)
        members = [np.flatnonzero(inverse == g) for g in range(int(inverse.max()) + 1)]
        picks = rng.integers(0, len(members), size=(n_resamples, len(members)))
        out = np.empty(n_resamples)
        for b, pick in enumerate(picks):
            idx = np.concatenate([members[g] for g in pick])
            out[b] = np.asarray(statistic(*(d[idx][None, :] for d in data)), dtype=np.float64).reshape(-1)[0]
        return out


def nonfinite_resamples(
    arrays: Sequence[ArrayLike],
    statistic: Callable[..., np.ndarray],
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    clusters: Sequence[int] | None = None,
) -> int:
    """How many of the resamples :func:`bootstrap_paired_ci` draws give a non-finite statistic."""
    stats = _resampled(arrays, statistic, n_resamples=n_resamples, seed=seed, clusters=clusters)
    return int((~np.isfinite(stats)).sum())


def bootstrap_ci(
    per_prompt_values: ArrayLike,
    statistic: Callable[..., np.ndarray] = np.mean,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    clusters: Sequence[int] | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap CI of ``statistic`` (a numpy reduction taking ``axis``) over prompts."""
    return bootstrap_paired_ci(
        [per_prompt_values],
        lambda x: statistic(x, axis=1),
        n_resamples=n_resamples,
        seed=seed,
        level=level,
        clusters=clusters,
    )


def bootstrap_ratio_ci(
    numerator: ArrayLike,
    denominator: ArrayLike,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    clusters: Sequence[int] | None = None,
) -> tuple[float, float]:
    """CI of mean(numerator) / mean(denominator), resampling prompts jointly (faithfulness)."""
    return bootstrap_paired_ci(
        [numerator, denominator],
        lambda a, b: a.mean(axis=1) / b.mean(axis=1),
        n_resamples=n_resamples,
        seed=seed,
        level=level,
        clusters=clusters,
    )


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def excludes_estimate(ci: tuple[float, float], estimate: float | None, *, folded: bool = False) -> str | None:
    """The sentence saying that ``ci`` does not contain its own point ``estimate`` (None when it
    does, or when either is not finite). ``folded``: the statistic is an absolute value (a gap
    |a - b| / |F(M)|), whose resamples lie above a gap near 0 by construction; only an estimate
    above its interval (the denominator near 0) is flagged then.

    A percentile interval of a ratio of means can lie wholly beside the ratio itself when the
    denominator's mean is near 0: the resamples whose denominator lands near the sample's are
    too few to reach the tails, so the interval describes other resamples, not the number shown
    next to it. Such an interval cannot decide a claim about that number.
    """
    if estimate is None:
        return None
    low, high, est = float(ci[0]), float(ci[1]), float(estimate)
    if not (np.isfinite(low) and np.isfinite(high) and np.isfinite(est)):
        return None
    # A degenerate interval [x, x] of float32 values may differ from x in its last bits; the
    # slack scales with the estimate only (with a far end it grew with the interval's width).
    slack = 1e-6 * max(1.0, abs(est))
    if (folded or low - slack <= est) and est <= high + slack:
        return None
    return (f"CI [{_fmt(low)}, {_fmt(high)}] excludes its own estimate {_fmt(est)} (a ratio whose denominator "
            "is near 0: few resamples land near the sample's denominator), so it says nothing about the "
            "number shown and cannot decide the claim")


def verdict(
    ci: tuple[float, float], threshold: float, direction: Direction, *, estimate: float | None = None
) -> tuple[Verdict, str]:
    """``(word, reason)``: verified, refuted or inconclusive for a CI against a threshold.

    ``at_least``/``at_most`` compare a score with ``threshold``. For effects, ``threshold``
    is the minimum effect size: ``negative`` means effect <= -threshold, ``positive``
    effect >= +threshold, ``any`` |effect| >= threshold. An interval that excludes its own
    point ``estimate`` (when given) verifies nothing and refutes only with the estimate
    refuted too; otherwise inconclusive, saying so (:func:`beside_estimate`).
    """
    low, high = float(ci[0]), float(ci[1])
    interval = f"CI [{_fmt(low)}, {_fmt(high)}]"
    if not (np.isfinite(low) and np.isfinite(high)):
        return "inconclusive", f"{interval} is not finite, so it cannot be compared with {threshold}"
    if low > high:
        raise InvalidArgument(f"CI bounds out of order: {ci}")
    t = float(threshold)
    if direction in ("negative", "positive", "any") and t < 0:
        raise InvalidArgument(f"a minimum effect size cannot be negative, got {threshold}")
    if direction == "at_least":
        good, bad = low >= t, high < t
        claim = f"at least {_fmt(t)}"
    elif direction == "at_most":
        good, bad = high <= t, low > t
        claim = f"at most {_fmt(t)}"
    elif direction == "negative":
        good, bad = high <= -t, low > -t
        claim = f"an effect of at most {_fmt(-t)}"
    elif direction == "positive":
        good, bad = low >= t, high < t
        claim = f"an effect of at least {_fmt(t)}"
    elif direction == "any":
        good, bad = (low >= t or high <= -t), (low > -t and high < t)
        claim = f"an effect of size at least {_fmt(t)} in either direction"
    else:
        raise InvalidArgument(
            f"unknown direction {direction!r}; use one of at_least, at_most, negative, positive, any"
        )
    word: Verdict
    if good:
        word, reason = "verified", f"{interval} lies entirely within the claim: {claim}."
    elif bad:
        word, reason = "refuted", f"{interval} lies entirely outside the claim: {claim}."
    else:
        word, reason = "inconclusive", f"{interval} straddles the threshold of the claim: {claim}."
    return beside_estimate(word, reason, ci, estimate, claim, lambda span: verdict(span, threshold, direction)[0])


def beside_estimate(word: Verdict, reason: str, ci: tuple[float, float], estimate: float | None, claim: str,
                    judge_span: Callable[[tuple[float, float]], Verdict], *,
                    folded: bool = False) -> tuple[Verdict, str]:
    """An interval that excludes its own ``estimate`` verifies nothing: the claim is then
    inconclusive. A refutation stands only where the whole span from the interval to the
    estimate (``judge_span``: the verdict of that span as an interval) lies outside the claim,
    on one side (an interval far below a bar of 1000 with its estimate there as well; not an
    interval above a band beside an estimate below it), and the reason then says the interval
    lies beside its estimate."""
    beside = excludes_estimate(ci, estimate, folded=folded)
    if beside is None or estimate is None:
        return word, reason
    span = (min(float(ci[0]), float(estimate)), max(float(ci[1]), float(estimate)))
    if word == "refuted" and judge_span(span) == "refuted":
        return word, f"{reason} (The interval excludes its own estimate {_fmt(float(estimate))}, refuted too.)"
    return "inconclusive", f"{beside}: {claim}."


def band_verdict(ci: tuple[float, float], low: float, high: float | None, *,
                 estimate: float | None = None) -> tuple[Verdict, str]:
    """``(word, reason)`` for a score claimed to lie in ``[low, high]`` (``high`` None: no
    upper end): verified when the whole interval lies inside the band, refuted when it lies
    wholly outside it (below ``low`` or above ``high``), inconclusive otherwise, and
    with an interval that excludes its own point ``estimate`` as :func:`beside_estimate` says."""
    if high is None:
        return verdict(ci, low, "at_least", estimate=estimate)
    lo, hi = float(ci[0]), float(ci[1])
    interval = f"CI [{_fmt(lo)}, {_fmt(hi)}]"
    claim = f"between {_fmt(low)} and {_fmt(high)}"
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "inconclusive", f"{interval} is not finite, so it cannot be compared with the band {claim}"
    if lo > hi:
        raise InvalidArgument(f"CI bounds out of order: {ci}")
    word: Verdict
    if low <= lo and hi <= high:
        word, reason = "verified", f"{interval} lies entirely within the claim: {claim}."
    elif hi < low:
        word, reason = "refuted", f"{interval} lies entirely below the claim: {claim}."
    elif lo > high:
        word, reason = "refuted", f"{interval} lies entirely above the claim: {claim} (the circuit overshoots)."
    else:
        word, reason = "inconclusive", f"{interval} straddles an end of the claim: {claim}."
    return beside_estimate(word, reason, ci, estimate, claim, lambda span: band_verdict(span, low, high)[0])
