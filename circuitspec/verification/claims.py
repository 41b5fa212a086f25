"""The circuit-level claims of a hypothesis, judged for :func:`circuitspec.verify`.

Faithfulness at node level (heads outside the circuit ablated) and at edge level
(only the hypothesis' edges carry signal between circuit heads), completeness and
minimality with their random-circuit null, and the robustness panel that repeats
them under every ablation and aggregation. Each function takes the run's
:class:`~circuitspec.verification.context.RunContext` (model, dataset, engine, settings) and
shares its ablation runners, so one ablation kind's caches serve every score; each
returns what it measured.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

import circuitspec.results as R
from circuitspec.ablation.edge import Wire, wires_from_circuit
from circuitspec.data.ioi import BABA_TEMPLATES
from circuitspec.data.tasks import build_dataset
from circuitspec.scoring.circuit_null import CircuitMaps, edge_null_distribution
from circuitspec.scoring.effects import effect_of
from circuitspec.scoring.faithfulness import edge_faithfulness, faithfulness
from circuitspec.scoring.nulls import MonteCarlo, NullDraws, p_value
from circuitspec.scoring.scores import evaluate_circuit
from circuitspec.scoring.stats import band_verdict, bootstrap_paired_ci, bootstrap_ratio_ci
from circuitspec.verification.context import RunContext
from circuitspec.verification.edges import edge_endpoints


@dataclass(frozen=True)
class Measured:
    """The faithfulness scores the full run measured under its own ablation (node and edge
    level, before judging), which the robustness panel reports again rather than recompute."""
    node: R.Score
    edge: R.Score


def pool_gate(v: RunContext, score: R.Score) -> R.Score:
    """A mean-ablation claim judged on an insufficient pool (too small, or not disjoint from
    the scored prompts) cannot be verified: it becomes inconclusive, saying why."""
    pool = v.built_mean_pool
    if v.settings.ablation != "mean" or pool is None or pool.sufficient or score.verdict != "verified":
        return score
    why = (f"the mean-ablation pool is insufficient ({pool.n} prompts, smallest mean over "
           f"{min(pool.counts.values()) if pool.counts else 0}, disjoint: {pool.disjoint}), so a "
           "mean-ablation claim cannot be verified")
    return replace(score, verdict="inconclusive", reason=f"{score.reason} But {why}.")


def circuit_positions(v: RunContext) -> dict[tuple[int, int], list[str]] | None:
    """With ``ablation_scope: circuit_positions``, each head's positions: the ``at`` of
    every edge it sends or receives along (END for logits edges); else None."""
    if v.settings.ablation_scope != "circuit_positions":
        return None
    out: dict[tuple[int, int], list[str]] = {}
    for edge in v.circuit.edges:
        at = "END" if edge.receiver == "logits" else edge.at
        groups = [edge.sender] + ([] if edge.receiver == "logits" else [edge.receiver])
        for group in groups:
            for head in v.circuit.nodes[group].heads:
                out.setdefault(head, [])
                if at not in out[head]:
                    out[head].append(at)
    return out


def wires(v: RunContext) -> list[Wire]:
    """The hypothesis' edges as wires between circuit heads, for edge-level runs."""
    return wires_from_circuit(v.circuit, at_positions=v.settings.edge_positions == "at")


def edge_level(v: RunContext, kind: str, threshold: float | None) -> R.Score:
    """Edge-level faithfulness under ``kind``."""
    return edge_faithfulness(v.runner(kind), wires(v), threshold=threshold, n_bootstrap=v.n_boot,
                             seed=v.seed, level=v.level, clusters=v.clusters)


def edge_null(v: RunContext, real: float) -> NullDraws | None:
    """The edge-level null: ``n_random_edge`` layer-matched random circuits wired like the
    hypothesis (the same random circuits as the node-level null's first draws)."""
    n, run = v.settings.n_random_edge, v.runner(v.settings.ablation)
    maps = CircuitMaps.of(run, sorted(v.circuit.heads()), v.seed)
    return edge_null_distribution(run, wires(v), maps, real=real,
                                  rule=MonteCarlo(n_min=n, n_max=n, batch=n, alpha=1 - v.level))


def null_gate(score: R.Score, null: R.NullDistribution | None, alpha: float,
              n_asked: int | None = None, option: str = "n_random") -> R.Score:
    """A faithfulness verdict of verified whose own null was drawn and not beaten (p > alpha:
    layer-matched random circuits come as close to 1) becomes inconclusive: the band alone
    does not show that these heads, rather than any heads of their layers, do the task.
    (The circuit nulls used to be reported beside the verdict without entering it.) So does a
    verified score whose null was asked for (``n_asked`` draws, ``option``) and could not be
    drawn (too few heads outside the circuit), as an edge without a null is judged; one whose
    run asked for none (``n_asked`` 0) keeps its verdict and says so."""
    if null is None and score.verdict == "verified" and n_asked is not None:
        if n_asked == 0:
            return replace(score, reason=score.reason + " It was not tested against a null of random circuits: "
                                                         f"the run asked for none ({option}=0).")
        return replace(score, verdict="inconclusive", reason=score.reason + (
            f" But it has no null to be judged against: {option}={n_asked} random circuits were asked for, "
            "and the model has too few heads outside the circuit to map it onto layer-matched random heads."))
    if null is None or null.p_value is None or score.verdict != "verified" or null.p_value <= alpha:
        return score
    if p_value(0, null.n) > alpha:  # no draws at least as close: too few draws to decide at alpha
        return replace(score, verdict="inconclusive", reason=score.reason + (
            f" But its null of {null.n} random circuits is too small to decide at {alpha:g}: even "
            f"beating every draw gives p = {p_value(0, null.n):.3g}."))
    why = (f" But layer-matched random circuits come as close to 1 (null p = {null.p_value:.3g} over "
           f"{null.n} draws > {alpha:g}), so the circuit is not shown to beat chance.")
    return replace(score, verdict="inconclusive", reason=score.reason + why)


def two_sided(v: RunContext, score: Any, empty: Any, band: tuple[float, float | None] | None) -> Any:
    """A faithfulness score with the normalised (F(C) - F(empty)) / (F(M) - F(empty)) beside it
    (its interval resamples the three per-prompt arrays jointly), judged against ``band``
    (min, max) when this is the level the claim is judged at."""
    fc, fm = (np.asarray(score.per_prompt[k], dtype=np.float64) for k in ("circuit", "model"))
    value = float((fc.mean() - empty.mean()) / (fm.mean() - empty.mean()))
    ci = bootstrap_paired_ci([fc, empty, fm], lambda c, e, m: (c.mean(1) - e.mean(1)) / (m.mean(1) - e.mean(1)),
                             n_resamples=v.n_boot, seed=v.seed, level=v.level, clusters=v.clusters)
    details = dict(score.details) | {"normalised": {"value": value, "ci": ci}}
    if v.hyp.task.kind == "ioi":
        details["by_order"] = by_order(v, fc, fm)
    if band is not None:
        details["band"] = [band[0], band[1] if band[1] is not None and np.isfinite(band[1]) else None]
    per_prompt = dict(score.per_prompt) | {"empty": empty.tolist()}
    out = replace(score, details=details, per_prompt=per_prompt)
    if band is None:
        return out
    word, reason = band_verdict(score.ci, *band, estimate=score.value)
    return replace(out, verdict=word, reason=reason)


def by_order(v: RunContext, fc: Any, fm: Any) -> dict[str, Any]:
    """Faithfulness on the BABA and the ABBA prompts apart (they behave differently), each with
    its own interval, from the same per-prompt values."""
    templates = np.asarray(v.dataset.template)
    out: dict[str, Any] = {}
    for name, mask in (("BABA", templates < len(BABA_TEMPLATES)), ("ABBA", templates >= len(BABA_TEMPLATES))):
        if not mask.any():
            continue
        clusters = None if v.clusters is None else templates[mask].tolist()
        out[name] = {"n": int(mask.sum()), "value": float(fc[mask].mean() / fm[mask].mean()),
                     "ci": bootstrap_ratio_ci(fc[mask], fm[mask], n_resamples=v.n_boot, seed=v.seed,
                                              level=v.level, clusters=clusters)}
    return out


def circuit_scores(v: RunContext) -> tuple[R.CircuitScores | None, Measured | None]:
    """Faithfulness (both levels, judged at the hypothesis' level), completeness,
    minimality and the null, as results.json reports them; also the faithfulness measured
    under the run's ablation, for the robustness panel."""
    claims = v.hyp.claims
    groups = {name: list(node.heads) for name, node in v.circuit.nodes.items() if node.heads}
    if not groups:
        return None, None
    resolved = claims.resolved()
    faith_bound = resolved["faithfulness"][0]
    claim = faith_bound.min if faith_bound is not None else None
    judged = {"node": claim if v.settings.ablation_level == "node" else None,
              "edge": claim if v.settings.ablation_level == "edge" else None}
    scores = evaluate_circuit(
        v.model,
        v.dataset,
        groups,
        ablation=v.settings.ablation,  # type: ignore[arg-type]
        faithfulness_min=judged["node"],
        completeness_max_gap=None if resolved["completeness"][0] is None else resolved["completeness"][0].max_gap,
        minimality_min=None if resolved["minimality"][0] is None else resolved["minimality"][0].min,
        n_random=v.settings.n_random,
        n_subsets=v.settings.n_subsets,
        greedy_steps=v.settings.greedy_steps,
        minimality_random=v.settings.minimality_random,
        n_bootstrap=v.n_boot,
        seed=v.seed,
        level=v.level,
        circuit_positions=circuit_positions(v),
        runner=v.runner(v.settings.ablation),
        clusters=v.clusters,
    )
    with v.work.at("edge_level"):
        edge = edge_level(v, v.settings.ablation, judged["edge"])
    with v.work.at("edge_level_null"):
        edge_draws = edge_null(v, edge.value) if v.settings.n_random_edge and edge.value is not None else None
    edge_null_level = None if edge_draws is None else edge_draws.summary()
    if edge_null_level is not None:
        edge = replace(edge, details={**edge.details, "null": R.as_json(edge_null_level)})
    node = scores.faithfulness
    if scores.null is not None:
        node = replace(node, details={**node.details, "null": R.as_json(scores.null)})
    if claim is not None:  # the level not judged is reported, saying why
        other = f"the faithfulness claim is judged at {v.settings.ablation_level} level; reported for information"
        if v.settings.ablation_level == "node":
            edge = replace(edge, reason=other)
        else:
            node = replace(node, reason=other)
    band = faith_bound.band if faith_bound is not None else None
    empty = v.runner(v.settings.ablation).run([()])[0].double().numpy()
    node = two_sided(v, node, empty, band if v.settings.ablation_level == "node" else None)
    edge = two_sided(v, edge, empty, band if v.settings.ablation_level == "edge" else None)
    node = null_gate(node, scores.null, 1 - v.level, v.settings.n_random)
    edge = null_gate(edge, edge_null_level, 1 - v.level, v.settings.n_random_edge, "n_random_edge")
    level_source = {lvl: resolved["faithfulness"][1] if v.settings.ablation_level == lvl else "reported"
                    for lvl in ("node", "edge")}
    out = replace(
        scores,
        faithfulness=claimed(v, node, level_source["node"]),
        completeness=claimed(v, scores.completeness, resolved["completeness"][1]),
        minimality=claimed(v, scores.minimality, resolved["minimality"][1]),
        null_edge_level=edge_null_level,
        faithfulness_edge_level=claimed(v, edge, level_source["edge"]),
    )
    return out, Measured(node=node, edge=edge)


def claimed(v: RunContext, score: R.Score, source: str) -> R.Score:
    """``score`` with where its bar came from (``details.claim``: claimed, default, off or
    reported) and the mean-ablation pool gate."""
    if source == "off":
        score = replace(score, reason="turned off in the hypothesis file; reported for information")
    return pool_gate(v, replace(score, details={**score.details, "claim": source}))


QUICK_NOTE = "not computed: verify --quick checks the edges and faithfulness only"


def quick_scores(v: RunContext) -> R.CircuitScores | None:
    """``verify --quick``: faithfulness at both levels, judged against the same band and at
    the same level as the full run, with no completeness, minimality or circuit nulls; the
    result cannot pass (see ``verify``)."""
    heads = sorted(v.circuit.heads())
    if not heads:
        return None
    bound = v.hyp.claims.resolved()["faithfulness"][0]
    claim = bound.min if bound is not None else None
    band = bound.band if bound is not None else None
    run = v.runner(v.settings.ablation)
    with v.work.at("faithfulness"):
        node = faithfulness(run, heads, threshold=claim if v.settings.ablation_level == "node" else None,
                            circuit_positions=circuit_positions(v), n_bootstrap=v.n_boot, seed=v.seed,
                            level=v.level, clusters=v.clusters)
        empty = run.run([()])[0].double().numpy()
    with v.work.at("edge_level"):
        edge = edge_level(v, v.settings.ablation, claim if v.settings.ablation_level == "edge" else None)
    node = two_sided(v, node, empty, band if v.settings.ablation_level == "node" else None)
    edge = two_sided(v, edge, empty, band if v.settings.ablation_level == "edge" else None)
    feasible = CircuitMaps.of(run, heads, v.seed).feasible
    node = quick_null_gate(node, v.settings.n_random, "n_random", feasible)
    edge = quick_null_gate(edge, v.settings.n_random_edge, "n_random_edge", feasible)

    skipped = R.Score(None, None, None, QUICK_NOTE)
    return R.CircuitScores(faithfulness=pool_gate(v, node), completeness=skipped, minimality=skipped,
                           f_model=node.details["f_model"], f_circuit=node.details["f_circuit"],
                           faithfulness_edge_level=pool_gate(v, edge))


def quick_null_gate(score: R.Score, n_asked: int, option: str, feasible: bool) -> R.Score:
    """``verify --quick`` draws no circuit null, but whether the full run could is known without
    a forward pass: a circuit with too few heads outside it is inconclusive here as it would be
    there (:func:`null_gate`); otherwise a verified score says that it was not tested."""
    if not (feasible and n_asked):
        return null_gate(score, None, 1.0, n_asked, option)
    if score.verdict != "verified":
        return score
    return replace(score, reason=score.reason + " It was not tested against a null of random circuits: "
                                                "verify --quick draws none.")


def panel_verdict(v: RunContext, score: Any) -> tuple[Any, str | None]:
    """A robustness row's interval and its verdict against the faithfulness band (None when
    faithfulness is off), so a setting under which the claim fails shows it."""
    bound = v.hyp.claims.resolved()["faithfulness"][0]
    ci = tuple(score.ci)
    return ci, None if bound is None else band_verdict(ci, *bound.band, estimate=score.value)[0]  # type: ignore[arg-type]


def robustness(v: RunContext, edges: Sequence[R.EdgeResult], measured: Measured | None) -> tuple[R.RobustnessRow, ...]:
    """Faithfulness (node and edge level) under every ablation and aggregation; edge
    effects under both semantics."""
    rows = []
    heads = sorted(v.circuit.heads())
    main = {e.name: e.effect for e in edges}
    for kind in ("mean", "resample", "zero"):
        if not heads:
            continue
        if measured is not None and kind == v.settings.ablation:
            node = measured.node
        else:
            node = faithfulness(v.runner(kind), heads, circuit_positions=circuit_positions(v),
                                n_bootstrap=v.n_boot, seed=v.seed, level=v.level, clusters=v.clusters)
        edge = measured.edge if measured is not None and kind == v.settings.ablation else edge_level(v, kind, None)
        # Path patching does not ablate, so the edge effects are not repeated on these rows;
        # each faithfulness is measured under this ablation and judged against the band.
        for level, score in (("", node), ("edge level, ", edge)):
            ci, word = panel_verdict(v, score)
            rows.append(R.RobustnessRow(f"{level}{kind} ablation, ratio of means", score.value, {}, ci,
                                        word))  # type: ignore[arg-type]
            rows.append(R.RobustnessRow(f"{level}{kind} ablation, mean of per-prompt ratios",
                                        score.details.get("mean_of_per_prompt_ratios"), {},
                                        score.details.get("mean_of_per_prompt_ratios_ci")))
    alternate = alternate_corruption(v)
    if alternate is not None:
        rows += alternate
    for semantics in ("path", "direct"):
        effects: dict[str, float | None] = dict(main)
        if semantics != v.settings.semantics:
            for edge_spec in v.circuit.edges:
                sender, receiver = edge_endpoints(v.circuit, edge_spec)
                patched = v.patched(sender, receiver, semantics)
                effects[edge_spec.name] = effect_of(patched, v.clean, v.corrupt)
        rows.append(R.RobustnessRow(f"{semantics} semantics (edge effects)", None, effects))
    return tuple(rows)


def alternate_corruption(v: RunContext) -> list[R.RobustnessRow] | None:
    """The panel's alternate-corruption rows: the IOI prompts regenerated with the other
    corruption (s_swap for abc and back), every edge's effect and faithfulness at both levels
    re-measured on them under the run's ablation, each judged against the band. Verdicts can
    move with the corruption (Miller et al. 2024), so the panel shows whether they do.
    None for tasks with their own prompts (no generator to regenerate them)."""
    task = v.hyp.task
    if task.kind != "ioi":
        return None
    other = "abc" if task.corruption == "s_swap" else "s_swap"
    n = len(v.dataset) - len(v.dataset) % 2  # s_swap pairs prompts: an even count
    if n < 2:
        return None
    dataset = build_dataset(task.model_copy(update={"corruption": other}), v.model.tokenizer,
                            prepend_bos=v.dataset.prepend_bos, n_prompts=n, seed=v.seed,
                            templates=list(v.settings.templates) if v.settings.templates is not None else task.templates)
    # Its own context: the regenerated prompts' baselines and runners. Its mean pool (same seed,
    # same layouts) is the run's own, reused when it covers these prompts' layouts.
    alt = RunContext(v.hyp, v.model, dataset, replace(v.settings, n_null_edges=0), mean_pool=v.built_mean_pool)
    effects: dict[str, float | None] = {}
    for edge_spec in v.circuit.edges:
        sender, receiver = edge_endpoints(v.circuit, edge_spec)
        effects[edge_spec.name] = effect_of(alt.patched(sender, receiver), alt.clean, alt.corrupt)
    heads = sorted(v.circuit.heads())
    rows = []
    if heads:
        node = faithfulness(alt.runner(v.settings.ablation), heads, circuit_positions=circuit_positions(alt),
                            n_bootstrap=alt.n_boot, seed=alt.seed, level=alt.level, clusters=alt.clusters)
        edge = edge_level(alt, v.settings.ablation, None)
        for level, score in (("", node), ("edge level, ", edge)):
            ci, word = panel_verdict(v, score)
            rows.append(R.RobustnessRow(f"{level}corruption={other} ({len(dataset)} prompts), {v.settings.ablation} "
                                        "ablation", score.value, effects if not level else {}, ci,
                                        word))  # type: ignore[arg-type]
    else:
        rows.append(R.RobustnessRow(f"corruption={other} ({len(dataset)} prompts)", None, effects))
    return rows
