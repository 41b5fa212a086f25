"""The circuit-level claims of a hypothesis, judged for :func:`circuitspec.verify`.

Faithfulness at node level (heads outside the circuit ablated) and at edge level
(only the hypothesis' edges carry signal between circuit heads), completeness and
minimality with their random-circuit null, and the robustness panel that repeats
them under every ablation and aggregation. Each function takes the run's
:class:`~circuitspec.verification.Verifier` (model, dataset, engine, options) and
shares its ablation runners, so one ablation kind's caches serve every score.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from circuitspec import results as R
from circuitspec.scoring.nulls import MonteCarlo, NullDraws

if TYPE_CHECKING:
    from circuitspec.verification import Verifier


def runner(v: Verifier, kind: str) -> Any:
    """The node-ablation runner for ``kind``, built once (its caches serve both levels)."""
    from circuitspec.ablation import AblationRunner

    if kind not in v.runners:
        with v.work.at("ablation_caches"):
            v.runners[kind] = AblationRunner(v.model, v.dataset, kind, work=v.work)  # type: ignore[arg-type]
    return v.runners[kind]


def circuit_positions(v: Verifier) -> dict[tuple[int, int], list[str]] | None:
    """With ``ablation_scope: circuit_positions``, each head's positions: the ``at`` of
    every edge it sends or receives along (END for logits edges); else None."""
    if v.hyp.ablation_scope != "circuit_positions":
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


def wires(v: Verifier) -> list[Any]:
    """The hypothesis' edges as wires between circuit heads, for edge-level runs."""
    from circuitspec.edge_ablation import wires_from_circuit

    return wires_from_circuit(v.circuit, at_positions=v.hyp.ablation_scope == "circuit_positions")


def edge_level(v: Verifier, kind: str, threshold: float | None) -> Any:
    """Edge-level faithfulness under ``kind`` (a :class:`circuitspec.scores.Score`)."""
    from circuitspec.edge_ablation import edge_faithfulness

    return edge_faithfulness(runner(v, kind), wires(v), threshold=threshold, n_bootstrap=v.n_boot,
                             seed=v.seed, level=v.level)


def edge_null(v: Verifier, real: float) -> NullDraws | None:
    """The edge-level null: ``n_random_edge`` layer-matched random circuits wired like the
    hypothesis (the same random circuits as the node-level null's first draws)."""
    from circuitspec.null import CircuitMaps, edge_null_distribution

    n, run = v.opts.n_random_edge, runner(v, v.ablation)
    maps = CircuitMaps.of(run, sorted(v.circuit.heads()), v.seed)
    return edge_null_distribution(run, wires(v), maps, real=real,
                                  rule=MonteCarlo(n_min=n, n_max=n, batch=n, alpha=1 - v.level))


def null_result(draws: NullDraws | None) -> R.NullDistribution | None:
    """A null's draws as results.json reports them."""
    if draws is None:
        return None
    return R.NullDistribution(draws.mean, draws.low, draws.high, draws.n, draws.real, draws.fraction_beaten,
                              draws.p_value, "layer_matched", draws.off_layer)


def circuit_scores(v: Verifier) -> tuple[R.CircuitScores | None, Any]:
    """Faithfulness (both levels, judged at the hypothesis' level), completeness,
    minimality and the null, as results.json reports them; also the raw scores."""
    from dataclasses import replace

    from circuitspec.scores import evaluate_circuit

    claims = v.hyp.claims
    groups = {name: list(node.heads) for name, node in v.circuit.nodes.items() if node.heads}
    if not groups:
        return None, None
    claim = claims.faithfulness.min if claims.faithfulness else None
    judged = {"node": claim if v.ablation_level == "node" else None,
              "edge": claim if v.ablation_level == "edge" else None}
    scores = evaluate_circuit(
        v.model,
        v.dataset,
        groups,
        ablation=v.ablation,  # type: ignore[arg-type]
        faithfulness_min=judged["node"],
        completeness_max_gap=claims.completeness.max_gap if claims.completeness else None,
        minimality_min=claims.minimality.min if claims.minimality else None,
        n_random=v.opts.n_random,
        n_subsets=v.opts.n_subsets,
        greedy_steps=v.opts.greedy_steps,
        minimality_random=v.opts.minimality_random,
        n_bootstrap=v.n_boot,
        seed=v.seed,
        level=v.level,
        circuit_positions=circuit_positions(v),
        runner=runner(v, v.ablation),
    )
    with v.work.at("edge_level"):
        edge = edge_level(v, v.ablation, judged["edge"])
    with v.work.at("edge_level_null"):
        edge_draws = edge_null(v, edge.value) if v.opts.n_random_edge else None
    if edge_draws is not None:
        edge.details["null"] = edge_draws.to_json()
    if scores.null is not None:
        scores.faithfulness.details["null"] = scores.null.to_json()
    node = scores.faithfulness
    if claim is not None:  # the level not judged is reported, saying why
        other = f"the faithfulness claim is judged at {v.ablation_level} level; reported for information"
        if v.ablation_level == "node":
            edge = replace(edge, reason=other)
        else:
            node = replace(node, reason=other)
    scores = replace(scores, faithfulness=node)

    def conv(s: Any) -> R.Score:
        details = dict(s.details)
        if s.per_prompt_mean_ratio is not None:
            details["mean_of_per_prompt_ratios"] = s.per_prompt_mean_ratio
        return R.Score(s.value, tuple(s.ci), s.verdict, s.reason, details)

    out = R.CircuitScores(
        faithfulness=conv(node),
        completeness=conv(scores.completeness),
        minimality=conv(scores.minimality),
        null=null_result(scores.null),
        null_edge_level=null_result(edge_draws),
        f_model=scores.f_model,
        f_circuit=scores.f_circuit,
        faithfulness_edge_level=conv(edge),
        f_empty=scores.f_empty,
        f_empty_ci=scores.f_empty_ci,
    )
    v.edge_scores[v.ablation] = edge
    return out, scores


QUICK_NOTE = "not computed: verify --quick checks the edges and faithfulness only"


def quick_scores(v: Verifier) -> R.CircuitScores | None:
    """``verify --quick``: faithfulness at both levels (judged as in the full run), no
    completeness, minimality or circuit nulls; the result cannot pass (see ``verify``)."""
    from circuitspec.scores import faithfulness

    heads = sorted(v.circuit.heads())
    if not heads:
        return None
    claim = v.hyp.claims.faithfulness.min if v.hyp.claims.faithfulness else None
    run = runner(v, v.ablation)
    with v.work.at("faithfulness"):
        node = faithfulness(run, heads, threshold=claim if v.ablation_level == "node" else None,
                            circuit_positions=circuit_positions(v), n_bootstrap=v.n_boot, seed=v.seed,
                            level=v.level)
    with v.work.at("edge_level"):
        edge = edge_level(v, v.ablation, claim if v.ablation_level == "edge" else None)

    def conv(s: Any) -> R.Score:
        return R.Score(s.value, tuple(s.ci), s.verdict, s.reason,
                       dict(s.details, mean_of_per_prompt_ratios=s.per_prompt_mean_ratio))

    skipped = R.Score(None, None, None, QUICK_NOTE)
    return R.CircuitScores(faithfulness=conv(node), completeness=skipped, minimality=skipped,
                           f_model=node.details["f_model"], f_circuit=node.details["f_circuit"],
                           faithfulness_edge_level=conv(edge))


def robustness(v: Verifier, edges: Sequence[R.EdgeResult], raw_scores: Any) -> tuple[R.RobustnessRow, ...]:
    """Faithfulness (node and edge level) under every ablation and aggregation; edge
    effects under both semantics."""
    from circuitspec.scores import faithfulness
    from circuitspec.verification import edge_endpoints, effect_of

    rows = []
    heads = sorted(v.circuit.heads())
    main = {e.name: e.effect for e in edges}
    for kind in ("mean", "resample", "zero"):
        if not heads:
            continue
        if raw_scores is not None and kind == v.ablation:
            node = raw_scores.faithfulness
        else:
            node = faithfulness(runner(v, kind), heads, circuit_positions=circuit_positions(v),
                                n_bootstrap=v.n_boot, seed=v.seed, level=v.level)
        edge = v.edge_scores.get(kind) or edge_level(v, kind, None)
        for level, score, shown in (("", node, main), ("edge level, ", edge, {})):
            rows.append(R.RobustnessRow(f"{level}{kind} ablation, ratio of means", score.value, shown))
            rows.append(R.RobustnessRow(f"{level}{kind} ablation, mean of per-prompt ratios",
                                        score.per_prompt_mean_ratio, {}))
    for semantics in ("path", "direct"):
        effects: dict[str, float | None] = dict(main)
        if semantics != v.semantics:
            for edge_spec in v.circuit.edges:
                sender, receiver = edge_endpoints(v.circuit, edge_spec)
                patched = v.patched(sender, receiver, semantics)
                effects[edge_spec.name] = effect_of(patched, v.clean, v.corrupt)
        rows.append(R.RobustnessRow(f"{semantics} semantics (edge effects)", None, effects))
    return tuple(rows)
