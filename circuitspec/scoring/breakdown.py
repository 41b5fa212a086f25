"""Every score split by prompt order (BABA vs ABBA) and by template, from per-prompt values.

IOI prompts come in two orders: BABA ("When Mary and John ..., John gave ... to") and
its ABBA mirror ("When John and Mary ..."); Wang et al.'s circuit need not behave the
same on both, and a pooled score can hide a circuit that only works on one. This module
recomputes each score that results.json carries per-prompt values for (every edge's
effect, faithfulness at both levels) on each order and each template, each with its own
interval over that subset's prompts. It reads only a :class:`~circuitspec.results.Result`,
so anyone can rebuild the table from results.json. Completeness and minimality keep no
per-prompt values (their K is chosen per run) and are not split.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from circuitspec.data.ioi import BABA_TEMPLATES
from circuitspec.scoring.stats import bootstrap_paired_ci

if TYPE_CHECKING:
    from circuitspec.results import Result

__all__ = ["breakdown", "order_of"]


def order_of(template: int) -> str:
    """``BABA`` for the first 15 IOI templates, ``ABBA`` for their mirrors."""
    return "BABA" if template < len(BABA_TEMPLATES) else "ABBA"


def _effect(p: np.ndarray, c: np.ndarray, r: np.ndarray) -> np.ndarray:
    return (p.mean(1) - c.mean(1)) / (c.mean(1) - r.mean(1))


def _ratio(fc: np.ndarray, fm: np.ndarray) -> np.ndarray:
    return fc.mean(1) / fm.mean(1)


def _scores(result: Result) -> dict[str, tuple[Callable[..., np.ndarray], list[np.ndarray]]]:
    """Each split score: its statistic and the per-prompt arrays it is computed from."""
    pp = result.metric.per_prompt or {}
    clean, corrupt = (np.asarray(pp.get(k, ()), dtype=np.float64) for k in ("clean", "corrupt"))
    out: dict[str, tuple[Callable[..., np.ndarray], list[np.ndarray]]] = {}
    for edge in result.edges:
        if edge.per_prompt:
            out[f"edge {edge.name}"] = (_effect, [np.asarray(edge.per_prompt, dtype=np.float64), clean, corrupt])
    c = result.circuit
    if c is not None:
        for name, score in (("faithfulness (node level)", c.faithfulness),
                            ("faithfulness (edge level)", c.faithfulness_edge_level)):
            values = None if score is None else score.per_prompt
            if values and values.get("circuit") and values.get("model"):
                out[name] = (_ratio, [np.asarray(values[k], dtype=np.float64) for k in ("circuit", "model")])
    return out


def _split(stat: Callable[..., np.ndarray], arrays: Sequence[np.ndarray], mask: np.ndarray, *, n_boot: int,
           seed: int, level: float, clusters: np.ndarray | None = None) -> dict[str, Any]:
    """The score on the prompts in ``mask``; its interval resamples ``clusters`` (templates)
    when given and the subset has at least two of them, else prompts (``unit`` says which)."""
    sub = [a[mask] for a in arrays]
    with np.errstate(divide="ignore", invalid="ignore"):
        value = float(stat(*(s[None, :] for s in sub))[0])
    labels = None if clusters is None or len(set(clusters[mask].tolist())) < 2 else clusters[mask].tolist()
    ci = (bootstrap_paired_ci(sub, stat, n_resamples=n_boot, seed=seed, level=level, clusters=labels)
          if mask.sum() > 1 else None)
    return {"n": int(mask.sum()), "value": value if np.isfinite(value) else None,
            "ci": None if ci is None else [x if np.isfinite(x) else None for x in ci],
            "unit": "prompt" if labels is None else "template"}


def breakdown(result: Result, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """``{"by_order": {score: {BABA: {n, value, ci}, ABBA: ...}}, "by_template": {score: {t: ...}}}``.

    Intervals by order resample templates as clusters when the run's did
    (``settings.bootstrap_unit``), by template they resample prompts (one template cannot be
    resampled as a cluster of itself); each entry's ``unit`` says which. An empty dict when the
    prompts carry no IOI template ids.
    """
    templates = np.asarray((result.metric.per_prompt or {}).get("template", ()), dtype=np.int64)
    if result.task.kind != "ioi" or templates.size == 0:
        return {}
    orders = np.asarray([order_of(int(t)) for t in templates])
    # A run whose intervals resample templates splits by order with templates as clusters too
    # (resampling the prompts of one template as independent made these intervals narrower
    # than the run's own by_order); one template alone can only resample its prompts.
    clusters = templates if getattr(result.settings, "bootstrap_unit", "prompt") == "template" else None
    by_order: dict[str, Mapping[str, Any]] = {}
    by_template: dict[str, Mapping[str, Any]] = {}
    for name, (stat, arrays) in _scores(result).items():
        if any(a.size != templates.size for a in arrays):
            continue
        kw: dict[str, Any] = {"n_boot": n_boot, "seed": seed, "level": level}
        by_order[name] = {o: _split(stat, arrays, orders == o, clusters=clusters, **kw)
                          for o in ("BABA", "ABBA") if (orders == o).any()}
        by_template[name] = {str(t): _split(stat, arrays, templates == t, **kw) for t in sorted(set(templates.tolist()))}
    return {"by_order": by_order, "by_template": by_template}
