"""Faithfulness: how much of the model's behaviour the circuit alone recovers, F(C) / F(M).

F(X) is the mean logit difference when only X carries signal: at node level the heads
outside the circuit are ablated (:mod:`circuitspec.ablation.node`); at edge level only the
hypothesis' edges carry clean signal between circuit heads (:mod:`circuitspec.ablation.edge`).
Each score is a :class:`~circuitspec.records.scores.Score`, the type results.json holds: a
bootstrap interval over prompts (or templates), a verdict against the claimed threshold, and
the mean of per-prompt ratios beside it in ``details``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from circuitspec.ablation.edge import Wire, edge_level_logit_diff
from circuitspec.ablation.node import AblationRunner, Keep
from circuitspec.records.fields import Verdict
from circuitspec.records.scores import Score
from circuitspec.scoring.stats import (
    Direction,
    beside_estimate,
    bootstrap_ci,
    bootstrap_ratio_ci,
    nonfinite_resamples,
    verdict,
)
from circuitspec.spec.heads import Head

__all__ = ["edge_faithfulness", "faithfulness", "judge", "power", "ratio_score"]


def judge(ci: tuple[float, float], threshold: float | None, direction: Direction,
          what: str, estimate: float | None = None, *, folded: bool = False) -> tuple[Verdict | None, str]:
    """The verdict of ``ci`` against a claimed ``threshold``; none when nothing was claimed.
    ``estimate``: the point value the interval belongs to; an interval excluding it cannot decide
    (``folded``: an absolute gap, see :func:`~circuitspec.scoring.stats.excludes_estimate`)."""
    if threshold is None:
        return None, f"no {what} claim was made; reported for information"
    word, reason = verdict(ci, threshold, direction)
    return beside_estimate(word, reason, ci, estimate, what, lambda span: verdict(span, threshold, direction)[0],
                           folded=folded)


def faithfulness(
    runner: AblationRunner,
    circuit: Sequence[Head] | frozenset[Head],
    *,
    threshold: float | None = None,
    circuit_positions: Mapping[Head, Sequence[str]] | None = None,
    mlp_keep: Sequence[int] | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    clusters: Sequence[int] | None = None,
) -> Score:
    """F(C) / F(M) with a CI that resamples prompts (or ``clusters`` of them) jointly for
    numerator and denominator."""
    fm = runner.clean.double().numpy()
    fc = runner.run([Keep.of(circuit, mlp_keep, circuit_positions)])[0].double().numpy()
    return ratio_score(fc, fm, threshold, "faithfulness", n_bootstrap=n_bootstrap, seed=seed, level=level,
                       clusters=clusters)


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a.mean(1) / b.mean(1)


def ratio_score(fc: np.ndarray, fm: np.ndarray, threshold: float | None, what: str, *,
                n_bootstrap: int, seed: int, level: float, clusters: Sequence[int] | None = None) -> Score:
    """mean(fc) / mean(fm) judged against ``threshold``; the mean of per-prompt ratios beside
    it, each with a bootstrap interval over the same prompts (``clusters``: whole templates)."""
    ci = bootstrap_ratio_ci(fc, fm, n_resamples=n_bootstrap, seed=seed, level=level, clusters=clusters)
    value = float(fc.mean() / fm.mean())
    word, reason = judge(ci, threshold, "at_least", what, value)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = fc / fm
    boot: dict[str, Any] = {"n_resamples": n_bootstrap, "seed": seed, "level": level, "clusters": clusters}
    bad = nonfinite_resamples([fc, fm], _ratio, n_resamples=n_bootstrap, seed=seed, clusters=clusters)
    if bad:
        reason += f" {bad} of {n_bootstrap} resamples gave a non-finite ratio (F(M) near 0 in them)."
    details = {"f_model": float(fm.mean()), "f_circuit": float(fc.mean()), "threshold": threshold,
               "f_model_ci": bootstrap_ci(fm, **boot), "f_circuit_ci": bootstrap_ci(fc, **boot),
               "mean_of_per_prompt_ratios": float(np.mean(ratios)),
               "mean_of_per_prompt_ratios_ci": bootstrap_ci(ratios, **boot),
               "power": power(ci, len(fc), clusters=clusters), "nonfinite_resamples": bad,
               "bootstrap_unit": "prompt" if clusters is None else "template"}
    return Score(value, ci, word, reason, details,
                 {"circuit": fc.tolist(), "model": fm.tolist()})


def power(ci: tuple[float, float], n: int, target: float = 0.1,
          clusters: Sequence[int] | None = None) -> dict[str, Any]:
    """The interval half-width reached with ``n`` prompts, and how many prompts a
    +-``target`` interval would need if half-widths shrank as 1/sqrt(n).

    That is a lower bound (``n_prompts_needed_is``): with template clusters the interval
    shrinks with the number of templates, not prompts, and no number of prompts from the
    same templates removes the spread between them."""
    half = (ci[1] - ci[0]) / 2
    need = math.ceil(n * (half / target) ** 2) if math.isfinite(half) else None
    out = {"half_width": half, "n_prompts": n, "target_half_width": target, "n_prompts_needed": need,
           "n_prompts_needed_is": "exact under 1/sqrt(n) scaling of independent prompts"}
    if clusters is not None:
        out["n_clusters"] = len(set(clusters))
        out["n_prompts_needed_is"] = (f"a lower bound: the interval resamples {len(set(clusters))} template "
                                      "clusters, and prompts from the same templates do not shrink it as 1/sqrt(n)")
    return out


def edge_faithfulness(
    runner: AblationRunner,
    wires: Sequence[Wire],
    *,
    threshold: float | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    clusters: Sequence[int] | None = None,
) -> Score:
    """Edge-level F(C) / F(M) with its bootstrap CI and verdict; the per-prompt-ratio mean beside it.

    The edge-level run is evaluated once; the intervals resample its per-prompt values.
    """
    fm = runner.clean.double().numpy()
    fc = edge_level_logit_diff(runner, wires).double().numpy()
    score = ratio_score(fc, fm, threshold, "edge-level faithfulness", n_bootstrap=n_bootstrap,
                        seed=seed, level=level, clusters=clusters)
    return replace(score, details={**score.details, "level": "edge", "n_wires": len(wires)})
