"""``suggest --grow-edges``: a draft whose edges :mod:`circuitspec.analyses.grow` grew, with
``discovery:`` and the growth evidence (the curve, each edge's gain, every pruning) as comments."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from circuitspec.ablation.mean_pool import MeanPool, build_mean_pool, pool_seed
from circuitspec.ablation.node import AblationRunner
from circuitspec.analyses.grid import head_label
from circuitspec.analyses.grow import GrowEdge, GrowResult, grow_edges
from circuitspec.analyses.suggest import Draft, draft_hypothesis, write_draft
from circuitspec.patching.engine import select_engine
from circuitspec.spec.circuit import default_sign
from circuitspec.spec.load import load_hypothesis
from circuitspec.spec.schema import Hypothesis

if TYPE_CHECKING:
    from circuitspec.bridge.loading import LoadedModel
    from circuitspec.data.dataset import Dataset

__all__ = ["evidence_lines", "grow_hypothesis"]


def grow_hypothesis(
    model: LoadedModel, dataset: Dataset, out: str | Path, *, model_ref: str, seed: int,
    start: str | Path | None = None, keep_edges: bool = False, ablation: str = "mean", confirm: int = 6,
    progress: bool = True,
    log: Callable[[str], None] | None = None, **options: Any,
) -> tuple[Path, GrowResult]:
    """Groups from ``suggest``'s draft (or the nodes of the hypothesis file ``start``), edges
    grown (from ``start``'s edges with ``keep_edges``, else from none) and pruned by
    :func:`grow_edges` (``options``), written as a validated draft with
    ``discovery:`` and the evidence as comments; return its path and the result."""
    extra: dict[str, Any] = {}
    if start is not None:
        hyp = load_hypothesis(start)
        nodes = hyp.circuit().nodes.values()
        draft = Draft(groups={n.name: (n.role, list(n.heads)) for n in nodes},
                      evidence={head_label(*h): [f"in {n.name} of {Path(start).name}"] for n in nodes for h in n.heads})
        if hyp.prepend_bos is not None:
            extra["prepend_bos"] = hyp.prepend_bos
        # Screen as the file's verify path-patches, and against its edge bar unless told.
        options = {"semantics": hyp.semantics, "freeze_mlps": hyp.freeze_mlps, **options}
        bar = hyp.claims.edges.min_effect if hyp.claims.edges is not None else None
        if options.get("min_effect") is None and bar is not None:
            options["min_effect"] = bar
        if keep_edges:
            options["initial"] = [GrowEdge(e.sender, e.receiver, e.via, e.at) for e in hyp.edges]
    else:
        draft = draft_hypothesis(model, dataset, progress=progress, log=log, confirm=confirm)
    # Mean ablation takes its means from the separate pool verify uses (pool seed = the
    # discovery seed + its offset), so the F grown here is the F verify would give on these
    # prompts; the scored prompts' own corrupted partners would be an in-sample mean.
    pool = (build_mean_pool(model, dataset, generate=dataset.notes.get("task") == "ioi", seed=pool_seed(seed))
            if ablation == "mean" else None)
    runner = AblationRunner(model, dataset, ablation, mean_pool=pool)  # type: ignore[arg-type]
    options = {k: v for k, v in options.items() if v is not None}
    result = grow_edges(runner, draft.groups, engine=select_engine(model, dataset), log=log, **options)
    notes = evidence_lines(result, options, ablation, start, pool)
    if options.get("at_positions"):
        extra["ablation_scope"] = "circuit_positions"
    elif "edge_positions" in Hypothesis.model_fields:
        extra["edge_positions"] = "every"  # found with edges at every position: verify the same claim
    grown = Draft(groups=result.groups, edges=[_with_sign(e, result) for e in result.edges],
                  evidence=draft.evidence, seconds={**draft.seconds, "grow": result.seconds})
    # discovery: how the prompts were drawn (seed, count, corruption and the template ids the
    # generator drew from), so that verify regenerates exactly these prompts. The templates
    # the prompts happen to use would name other prompts: the generator draws differently
    # from a restricted template list.
    path = write_draft(grown, out, model_ref=model_ref, n_prompts=len(dataset), seed=seed, notes=notes,
                       corruption=dataset.notes.get("corruption", "abc"),
                       templates=dataset.notes.get("templates"), extra=extra)
    load_hypothesis(path)
    return Path(path), result


def _with_sign(edge: GrowEdge, result: GrowResult) -> dict[str, Any]:
    """The edge as a file writes it, with ``expect: {sign}`` where its path-patching effect on
    the discovery prompts has the sign opposite to the default (negative, positive from a
    negative name mover), so that verify tests the sign the evidence shows."""
    out: dict[str, Any] = edge.as_dict()
    effect = result.effects.get(edge)
    if effect is None or not math.isfinite(effect) or effect == 0:
        return out
    sign = "positive" if effect > 0 else "negative"
    return out if sign == default_sign(result.groups[edge.sender][0]) else {**out, "expect": {"sign": sign}}


def evidence_lines(result: GrowResult, options: Mapping[str, Any], ablation: str,
                   start: str | Path | None, pool: MeanPool | None = None) -> list[str]:
    """The growth curve, each edge's gain and every pruning, as header comment lines."""
    band = options.get("band", (0.8, 1.2))
    means = ("" if pool is None else
             f" (means from a separate pool, seed {pool.seed}, at least {pool.per_template_min} prompts "
             "per layout, as verify takes them)" if pool.disjoint else f" (in-sample means: {pool.built})")
    lines = [
        "",
        "Edges grown by `circuitspec suggest --grow-edges` (circuitspec/analyses/grow.py) from the groups of "
        + (str(start) if start is not None else "the draft above") + ":",
        f"forward selection on exact edge-level faithfulness F(C)/F(M), {ablation} ablation{means}, band "
        f"[{band[0]}, {band[1]}], tolerance {options.get('tolerance', 0.01)}; per step the "
        f"{options.get('n_exact', 3)} candidates of largest path-patching effect evaluated exactly, of those whose "
        f"|effect| clears {options.get('min_effect', 0.05)} (an edge below verify's bar would be refuted by it).",
        f"F with no edges: {result.start:.3f}",
    ]
    n_edges = 0 if result.seeded is None else result.seeded[0]
    if result.seeded is not None:
        lines.append(f"F with the {n_edges} starting edges: {result.seeded[1]:.3f} (the edges of {start})")
    for i, s in enumerate(result.steps, 1):
        n_edges += 1 + len(s.upstream)
        screened = "" if s.screened is None else f", path patching {s.screened:+.3f}"
        lines.append(f"step {i}: + {s.edge.name}: F {s.faithfulness:.3f} (gain {s.gain:+.3f}{screened}, "
                     f"{s.tried} evaluated; {n_edges} edges)")
        if s.upstream:
            lines.append(f"  with its upstream chain: {', '.join(e.name for e in s.upstream)}")
    lines.append(f"stopped: {result.stop}")
    lines += [f"pruned {p}" for p in result.pruned]
    lines.append(f"final edge-level F {result.faithfulness:.3f} with {len(result.edges)} edges; "
                 f"{result.evaluations} edge-level evaluations, {result.seconds} s")
    if result.effects:
        lines.append("each edge's path-patching effect on these prompts (an edge whose sign differs from "
                     "the default is written with expect: {sign}):")
        lines += [f"  {e.name}: {result.effects[e]:+.3f}" for e in result.edges if e in result.effects]
    if result.node_level is not None:
        lo, hi = band
        outside = "" if lo <= result.node_level <= hi else (
            f"; outside the growth target [{lo}, {hi}]: where edge-level F lies in it, the wiring may reach it "
            "only by leaving out an edge that works against the task (or by missing a path node level keeps)")
        lines.append(f"node-level F of these groups (every edge among their heads): {result.node_level:.3f}{outside}")
    return lines
