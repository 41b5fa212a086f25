"""One edge of a hypothesis, verified: its patched effect, interval, per-head breakdown and null.

The edge's senders are patched jointly into its receivers (one joint patch, as in Wang et
al. 2022), each sender component alone beside it, in one engine sweep; the per-edge null
patches layer-matched random sender groups into the same receivers
(:mod:`circuitspec.scoring.edge_null`). The verdict needs the interval past the edge's
``min_effect`` and the null beaten.
"""

from __future__ import annotations

import circuitspec.results as R
from circuitspec.patching.types import LOGITS, Receiver, Sender
from circuitspec.scoring.edge_null import EdgeNullSetup, edge_null, judge_with_null
from circuitspec.scoring.nulls import MonteCarlo
from circuitspec.scoring.stats import verdict
from circuitspec.spec.circuit import Circuit, Edge
from circuitspec.spec.heads import format_head
from circuitspec.verification.context import RunContext

__all__ = ["edge_endpoints", "verify_edge"]


def edge_endpoints(circuit: Circuit, edge: Edge) -> tuple[Sender, Receiver]:
    """The patching sender and receiver an edge of the hypothesis names."""
    src = circuit.nodes[edge.sender]
    sender = Sender(heads=tuple(src.heads), mlps=tuple(src.mlps))
    if edge.receiver == "logits":
        return sender, LOGITS
    dst = circuit.nodes[edge.receiver]
    return sender, Receiver(heads=tuple(dst.heads), via=edge.via, at=edge.at)  # type: ignore[arg-type]


def verify_edge(ctx: RunContext, edge: Edge) -> R.EdgeResult:
    """Patch ``edge`` (jointly, and each sender alone), judge it against its claim and null."""
    sender, receiver = edge_endpoints(ctx.circuit, edge)
    # The joint patch and each sender component alone: one sweep; the null's draws: more.
    alone: list[tuple[str, Sender]] = []
    if ctx.settings.per_head and len(sender.heads) + len(sender.mlps) > 1:
        alone = [(format_head(h), Sender(heads=(h,))) for h in sender.heads]
        alone += [(f"MLP{m}", Sender(mlps=(m,))) for m in sender.mlps]
    rows = ctx.sweep([sender] + [s for _, s in alone], receiver)
    patched = rows[0]
    value, ci = ctx.effect_with_ci(patched)
    word, reason = verdict(ci, edge.min_effect, edge.sign, estimate=value)  # type: ignore[arg-type]
    per_head = [
        R.HeadEffect(name, *ctx.effect_with_ci(row))
        for (name, _), row in zip(alone, rows[1 : 1 + len(alone)], strict=True)
    ]
    draws = None  # the run asked for no null (n_null_edges=0); a sentence: the edge has none
    if ctx.settings.n_null_edges:
        with ctx.work.at("edge_nulls"):
            draws = edge_null(edge.name, sender, receiver, value, edge.sign,
                              lambda group: ctx.sweep(group, receiver), ctx.clean, ctx.corrupt,
                              _null_setup(ctx))
    word, reason = judge_with_null(word, reason, ci, draws, edge.sign, 1 - ctx.level)
    null = draws.summary() if draws is not None and not isinstance(draws, str) else None
    return R.EdgeResult(
        sender=edge.sender,
        receiver=edge.receiver,
        via=edge.via,
        at=edge.at if edge.receiver != "logits" else "END",
        metric_patched=float(patched.mean()),
        effect=value,
        ci=ci,
        verdict=word,  # type: ignore[arg-type]
        reason=reason,
        expect=R.Expectation(edge.sign, edge.min_effect),
        per_head=tuple(per_head),
        null=null,
        per_prompt=tuple(patched.tolist()),
    )


def _null_setup(ctx: RunContext) -> EdgeNullSetup:
    n = ctx.settings.n_null_edges
    rule = MonteCarlo(n_min=n, n_max=max(n, ctx.settings.n_null_edges_max or n), batch=n, alpha=1 - ctx.level)
    return EdgeNullSetup(ctx.model.info.n_layers, ctx.model.info.n_heads,
                         frozenset(ctx.circuit.heads()), frozenset(ctx.circuit.mlps()), ctx.seed, rule)
