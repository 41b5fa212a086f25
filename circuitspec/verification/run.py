"""Verification: run every edge and every claim of a hypothesis, and judge them.

``verify`` is the whole of ``circuitspec verify``: load the model, build the
prompts, path-patch every edge (with a per-head breakdown and a random-sender
null, :mod:`.edges`), score the circuit (faithfulness, completeness, minimality with
their random-circuit null, :mod:`.claims`), add the robustness panel, and return a
:class:`Result` whose every number carries a bootstrap interval and every claim a verdict.
The settings are checked once (:mod:`.settings`) before any model work; everything the
stages share is the :class:`~circuitspec.verification.context.RunContext`.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

import circuitspec.results as R
from circuitspec.bridge.loading import load_model
from circuitspec.data.held_out import HeldOut, held_out_status
from circuitspec.data.ioi import BABA_TEMPLATES
from circuitspec.data.tasks import hypothesis_dataset
from circuitspec.errors import InvalidArgument, did_you_mean
from circuitspec.scoring.breakdown import breakdown
from circuitspec.scoring.mib import verify_score
from circuitspec.scoring.stats import bootstrap_ci, cluster_widening
from circuitspec.spec.heads import format_head
from circuitspec.spec.load import check_against_model, load_hypothesis
from circuitspec.spec.schema import Hypothesis
from circuitspec.verification import claims
from circuitspec.verification.context import RunContext
from circuitspec.verification.edges import verify_edge
from circuitspec.verification.settings import QUICK_NULL, Options

if TYPE_CHECKING:
    from circuitspec.bridge.loading import LoadedModel
    from circuitspec.data.dataset import Dataset

__all__ = ["Options", "Progress", "assemble", "verify"]

Progress = Callable[[str, int, int], None]


def _versions() -> R.Versions:
    from importlib.metadata import PackageNotFoundError, version

    def v(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return R.Versions(v("circuitspec"), v("torch"), v("transformer-lens"), v("transformers"), platform.python_version())


def verify(
    hypothesis: str | Path | Hypothesis,
    model: LoadedModel | None = None,
    options: Options | None = None,
    progress: Progress | None = None,
    **overrides: Any,
) -> R.Result:
    """Check a hypothesis: every edge by path patching, every circuit claim by ablation.

    ``hypothesis`` is a file path or a loaded :class:`~circuitspec.spec.schema.Hypothesis`;
    ``model`` a loaded model (loaded from the file's reference when omitted). Keyword
    overrides set :class:`Options` fields (``n_prompts=32, engine="reference"``...).
    """


    opts = options or Options()
    for key, value in overrides.items():
        if not hasattr(opts, key):
            raise InvalidArgument(f"verify() got an unknown option {key!r}{did_you_mean(key, vars(opts))}")
        setattr(opts, key, value)
    opts.check()
    report = progress or (lambda what, done, total: None)
    hyp = hypothesis if isinstance(hypothesis, Hypothesis) else load_hypothesis(hypothesis)
    report("loading model", 0, 1)
    if opts.quick:
        opts.n_null_edges, opts.n_null_edges_max = min(opts.n_null_edges, QUICK_NULL), None
        opts.robustness = False
    timings: dict[str, float] = {}
    torch.manual_seed(opts.seed if opts.seed is not None else (hyp.task.seed or 0))

    start = time.perf_counter()
    if model is None:
        spec = hyp.model_spec
        model = load_model(
            spec.name, revision=spec.revision, device=opts.device or spec.device or "cpu",
            dtype=spec.dtype or "float32", device_map=spec.device_map, n_devices=spec.n_devices,
        )
    timings["load_model"] = time.perf_counter() - start
    check_against_model(hyp, model.info)
    report("building prompts", 0, 1)
    dataset = hypothesis_dataset(
        hyp, model.tokenizer, default_prepend_bos=model.info.default_prepend_bos,
        n_prompts=opts.n_prompts, seed=opts.seed, templates=opts.templates,
    )
    held = held_out_status(hyp, dataset, model.tokenizer, in_sample=opts.in_sample, templates=opts.templates)

    with torch.no_grad():
        report("clean and corrupted runs", 0, 1)
        ctx = RunContext(hyp, model, dataset, opts)
        work = ctx.work
        edges = []
        with work.at("edges"):
            for i, edge in enumerate(ctx.circuit.edges):
                report(f"edge {edge.name}", i, len(ctx.circuit.edges))
                edges.append(verify_edge(ctx, edge))
        report("edges", len(edges), len(edges))

        circuit, measured = (None, None)
        if opts.scores:
            report("circuit scores", 0, 1)
            with work.at("circuit_scores"):
                if opts.quick:
                    circuit = claims.quick_scores(ctx)
                else:
                    circuit, measured = claims.circuit_scores(ctx)
            if circuit is not None and hyp.graph == "mib":
                report("MIB's graph", 0, 1)
                with work.at("mib_graph"):
                    circuit = replace(circuit, faithfulness_mib=verify_score(ctx))

        robustness = None
        if opts.robustness:
            report("robustness panel", 0, 1)
            with work.at("robustness"):
                robustness = claims.robustness(ctx, edges, measured)
        timings.update(work.seconds)

    return assemble(hyp, model, dataset, ctx, edges, circuit, robustness, timings, held)


def _statistics(ctx: RunContext) -> dict[str, Any]:
    """The settings behind the intervals and nulls, as they were used."""
    o = ctx.opts
    return {"seed": ctx.seed, "level": ctx.level, "n_null_edges": o.n_null_edges,
            "n_null_edges_max": o.n_null_edges_max, "n_random": o.n_random, "n_random_edge": o.n_random_edge,
            "n_subsets": o.n_subsets, "greedy_steps": o.greedy_steps, "templates": o.templates,
            "in_sample": o.in_sample, "quick": o.quick,
            # What the bootstrap resamples as one cluster: a BABA template with its ABBA mirror.
            "cluster": None if ctx.clusters is None else f"template mod {len(BABA_TEMPLATES)}",
            # How an interval recomputes from the per-prompt values: the percentile interval of
            # the resampled statistic, widened around the estimate for few clusters.
            "interval": "percentile" if ctx.clusters is None else
                        "percentile, widened around the estimate by sqrt(G/(G-1)) t_{G-1}/z (G clusters)",
            "n_clusters": None if ctx.clusters is None else len(set(ctx.clusters)),
            "widening": None if ctx.clusters is None else cluster_widening(len(set(ctx.clusters)), ctx.level)}


def assemble(
    hyp: Hypothesis,
    model: LoadedModel,
    dataset: Dataset,
    ctx: RunContext,
    edges: list[R.EdgeResult],
    circuit: R.CircuitScores | None,
    robustness: tuple[R.RobustnessRow, ...] | None,
    timings: dict[str, float],
    held: HeldOut | None = None,
) -> R.Result:
    nodes = tuple(
        R.NodeInfo(n.name, n.role, tuple(format_head(h) for h in n.heads), tuple(n.mlps))
        for n in ctx.circuit.nodes.values()
    )
    claimed = [e.verdict for e in edges]
    if circuit is not None:
        claimed += [s.verdict for s in circuit.scores().values() if s.verdict is not None]
    # A quick check leaves claims unchecked, so it never passes (the CLI exits 3 if it held);
    # nor does an in-sample run without --in-sample.
    passed = (all(word == "verified" for word in claimed) and not ctx.opts.quick
              and not (held is not None and held.blocks))
    info = model.info
    notes = ", ".join(f"{k}={v}" for k, v in dataset.notes.items()) if dataset.notes else None
    if hyp.task.n_prompts is not None and len(dataset) != hyp.task.n_prompts:
        notes = (notes + "; " if notes else "") + (
            f"ran on {len(dataset)} prompts where the file says n_prompts: {hyp.task.n_prompts}")
    boot: dict[str, Any] = {"n_resamples": ctx.n_boot, "seed": ctx.seed, "level": ctx.level,
                            "clusters": ctx.clusters}
    result = R.Result(
        hypothesis=R.HypothesisInfo(hyp.name, hyp.source, hyp.description, nodes),
        model=R.ModelInfo(model.reference, info.name, model.revision, info.n_layers, info.n_heads, info.n_kv_heads),
        task=R.TaskInfo(hyp.task.kind, len(dataset), ctx.seed, hyp.task.corruption, dataset.prepend_bos, notes),
        metric=R.MetricResult(
            "logit_diff",
            float(ctx.clean.mean()),
            float(ctx.corrupt.mean()),
            bootstrap_ci(ctx.clean, **boot),
            bootstrap_ci(ctx.corrupt, **boot),
            {"clean": ctx.clean.tolist(), "corrupt": ctx.corrupt.tolist(),
             "template": list(dataset.template)},
        ),
        edges=tuple(edges),
        circuit=circuit,
        passed=passed,
        settings=R.Settings(
            ctx.semantics, ctx.ablation, ctx.freeze_mlps, ctx.engine.name, ctx.n_boot,
            ctx.ablation_level, hyp.ablation_scope,
            None if ctx.built_mean_pool is None else ctx.built_mean_pool.info(),
            ctx.bootstrap_unit,
            _statistics(ctx),
            "at" if claims.edge_at_positions(hyp) else "every",
        ),
        versions=_versions(),
        timings={k: round(v, 3) for k, v in timings.items()},
        work={k: round(v, 3) for k, v in ctx.work.forward_equivalents().items()},
        robustness=robustness,
        mode="quick" if ctx.opts.quick else "full",
        held_out=None if held is None else held.held_out,
        held_out_info=None if held is None else held.info(),
    )
    split = breakdown(result, n_boot=ctx.n_boot, seed=ctx.seed, level=ctx.level)
    return replace(result, breakdown=split or None)
