"""Faithfulness curves over circuit size, as the MIB circuit track draws them, with intervals.

An edge-scored graph ranks every edge of the model (edges a file does not list score 0,
as EAP-IG reads them). For each of MIB's sizes, 0.1 % ... 100 % of the model's edges,
the top-ranked edges are kept, pruned as EAP-IG prunes (an edge stays only while its
sender has an incoming edge, or is the input, and its receiver an outgoing one, or is
the logits), and scored with :func:`circuitspec.scoring.mib.mib_metric`. Faithfulness
at each size is MIB's (m(C) - m(empty)) / (m(M) - m(empty)); CPR is the area under the
curve and CMD the area between the curve and 1, both by the trapezoid rule over the
fraction of edges (MIB's ``evaluate_area_under_curve``).

MIB reports one number per curve. Here every per-prompt metric is kept, so the curve,
CPR and CMD get bootstrap intervals over prompts, and rankings by signed score, by
absolute score and at random (the baseline) are compared on the same prompts.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from circuitspec.data.dataset import Dataset
from circuitspec.formats.graph import GraphEdge
from circuitspec.scoring.mib import EdgeKey, all_edges, mib_metric, prune

__all__ = ["MIB_SIZES", "Curve", "area", "baseline", "curve", "interval", "normalised", "prune", "rankings"]

MIB_SIZES = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
"""The fractions of edges MIB evaluates."""


@dataclass(frozen=True)
class Curve:
    """One ranking's faithfulness at each size, CPR and CMD, each with a bootstrap interval."""

    ranking: str
    """signed, absolute, or random-N."""
    sizes: tuple[float, ...]
    n_edges: tuple[int, ...]
    """Edges kept at each size, after pruning."""
    faithfulness: tuple[float, ...]
    faithfulness_ci: tuple[tuple[float, float], ...]
    cpr: float
    cpr_ci: tuple[float, float]
    cmd: float
    cmd_ci: tuple[float, float]
    nonfinite: int = 0
    """Bootstrap resamples left out of the intervals because m(M) = m(empty) on them (the
    normalised faithfulness is undefined there); counted, not dropped silently."""

    def to_json(self) -> dict[str, Any]:
        return {"ranking": self.ranking, "sizes": list(self.sizes), "n_edges": list(self.n_edges),
                "faithfulness": list(self.faithfulness),
                "faithfulness_ci": [list(c) for c in self.faithfulness_ci],
                "cpr": self.cpr, "cpr_ci": list(self.cpr_ci), "cmd": self.cmd,
                "cmd_ci": list(self.cmd_ci), "nonfinite": self.nonfinite}


def rankings(graph_edges: Sequence[GraphEdge], universe: Sequence[EdgeKey], n_random: int,
             seed: int) -> dict[str, list[EdgeKey]]:
    """Every edge of ``universe`` ordered by signed score, by |score|, and at random."""
    score = {e.key: (e.score if e.has_score and e.score is not None else 0.0) for e in graph_edges}
    order = {e: i for i, e in enumerate(universe)}  # ties keep the model's edge order
    out = {
        "signed": sorted(universe, key=lambda e: (-score.get(e, 0.0), order[e])),
        "absolute": sorted(universe, key=lambda e: (-abs(score.get(e, 0.0)), order[e])),
    }
    rng = random.Random(seed)
    for i in range(n_random):
        shuffled = list(universe)
        rng.shuffle(shuffled)
        out[f"random-{i}"] = shuffled
    return out


def area(sizes: Sequence[float], values: Sequence[float]) -> tuple[float, float]:
    """(CPR, CMD): trapezoid areas under the curve and between it and 1."""
    cpr = cmd = 0.0
    for i in range(len(sizes) - 1):
        dx = sizes[i + 1] - sizes[i]
        cpr += dx * (values[i] + values[i + 1]) / 2
        cmd += dx * (abs(1 - values[i]) + abs(1 - values[i + 1])) / 2
    return cpr, cmd


def normalised(per: Sequence[Sequence[float]], empty: Sequence[float], full: Sequence[float],
               idx: Sequence[int]) -> list[float]:
    """(m(C) - m(empty)) / (m(M) - m(empty)) of each circuit in ``per``, means over prompts
    ``idx``; NaN where m(M) = m(empty) there (no gap to normalise by)."""
    def mean(xs: Sequence[float]) -> float:
        return sum(xs[i] for i in idx) / len(idx)

    m0, mm = mean(empty), mean(full)
    if mm == m0 or not math.isfinite(mm - m0):
        return [math.nan] * len(per)
    return [(mean(p) - m0) / (mm - m0) for p in per]


def interval(samples: Sequence[float], confidence: float) -> tuple[float, float]:
    """The percentile interval of the finite samples (NaN, NaN when none is finite)."""
    s = sorted(x for x in samples if math.isfinite(x))
    if not s:
        return math.nan, math.nan
    lo = int((1 - confidence) / 2 * (len(s) - 1))
    hi = int((1 + confidence) / 2 * (len(s) - 1))
    return s[lo], s[hi]


def curve(model: Any, dataset: Dataset, graph_edges: Sequence[GraphEdge], *,
          sizes: Sequence[float] = MIB_SIZES, n_random: int = 2, n_bootstrap: int = 1000,
          confidence: float = 0.95, seed: int = 0) -> list[Curve]:
    """Curves for the signed, absolute and ``n_random`` random rankings of the graph's edges."""
    parallel = bool(getattr(model.bridge.cfg, "parallel_attn_mlp", False))
    universe = all_edges(model.info, parallel)
    empty = mib_metric(model, dataset, [])
    full = mib_metric(model, dataset, universe)
    rng = random.Random(seed)
    n = len(dataset)
    boots = [[rng.randrange(n) for _ in range(n)] for _ in range(n_bootstrap)]
    out = []
    for name, ranked in rankings(graph_edges, universe, n_random, seed).items():
        circuits = [prune(ranked[:int(size * len(universe))]) for size in sizes]
        per = [mib_metric(model, dataset, c) for c in circuits]
        point = normalised(per, empty, full, range(n))
        cpr, cmd = area(sizes, point)
        samples = [normalised(per, empty, full, b) for b in boots]
        areas = [area(sizes, s) for s in samples]
        out.append(Curve(
            name, tuple(sizes), tuple(len(c) for c in circuits), tuple(point),
            tuple(interval([s[i] for s in samples], confidence) for i in range(len(sizes))),
            cpr, interval([a[0] for a in areas], confidence),
            cmd, interval([a[1] for a in areas], confidence),
            sum(1 for s in samples if not all(math.isfinite(x) for x in s))))
    return out


def baseline(curves: Sequence[Curve]) -> dict[str, Any] | None:
    """The random rankings summed up: mean CPR and CMD and their range over the draws (a
    spread over a few draws, not an interval); None without random rankings."""
    draws = [c for c in curves if c.ranking.startswith("random")]
    if not draws:
        return None
    cpr, cmd = [c.cpr for c in draws], [c.cmd for c in draws]
    return {"n": len(draws), "cpr_mean": sum(cpr) / len(cpr), "cpr_range": [min(cpr), max(cpr)],
            "cmd_mean": sum(cmd) / len(cmd), "cmd_range": [min(cmd), max(cmd)]}


def plot(curves: Sequence[Curve], path: Any, title: str) -> None:
    """Faithfulness against the fraction of edges (log scale), intervals shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for c in curves:
        random_one = c.ranking.startswith("random")
        style: dict[str, Any] = {"color": "grey", "alpha": 0.6, "linestyle": "--"} if random_one else {}
        label = "random ranking" if c.ranking == "random-0" else None if random_one else c.ranking
        ax.plot([s * 100 for s in c.sizes], c.faithfulness, marker="o", label=label, **style)
        if not random_one:
            ax.fill_between([s * 100 for s in c.sizes], [lo for lo, _ in c.faithfulness_ci],
                            [hi for _, hi in c.faithfulness_ci], alpha=0.2)
    ax.set_xscale("log")
    ax.set_xlabel("edges in the circuit (% of the model's)")
    ax.set_ylabel("faithfulness (MIB)")
    ax.axhline(1.0, color="black", linewidth=0.5)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
