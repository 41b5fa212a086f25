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
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

import circuitspec.results as R
from circuitspec.bridge.loading import load_model
from circuitspec.data.held_out import HeldOut, held_out_status
from circuitspec.data.tasks import hypothesis_dataset
from circuitspec.errors import InvalidArgument, did_you_mean
from circuitspec.scoring.breakdown import breakdown
from circuitspec.scoring.mib import verify_score
from circuitspec.scoring.stats import bootstrap_ci
from circuitspec.spec.heads import format_head
from circuitspec.spec.load import check_against_model, load_hypothesis
from circuitspec.spec.schema import Hypothesis
from circuitspec.verification import claims
from circuitspec.verification.context import RunContext
from circuitspec.verification.edges import verify_edge
from circuitspec.verification.settings import Options, resolve

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


    known = [f.name for f in fields(Options)]
    for key in overrides:
        if key not in known:
            raise InvalidArgument(f"verify() got an unknown option {key!r}{did_you_mean(key, known)}")
    opts = replace(options or Options(), **overrides)  # a copy: the caller's Options stay as they were
    opts.check()  # before reading the file: a bad option is named even when the file is bad too
    report = progress or (lambda what, done, total: None)
    hyp = hypothesis if isinstance(hypothesis, Hypothesis) else load_hypothesis(hypothesis)
    settings = resolve(hyp, opts)
    report("loading model", 0, 1)
    timings: dict[str, float] = {}
    torch.manual_seed(settings.seed)

    start = time.perf_counter()
    if model is None:
        spec = hyp.model_spec
        model = load_model(
            spec.name, revision=spec.revision, device=settings.device,
            dtype=spec.dtype or "float32", device_map=spec.device_map, n_devices=spec.n_devices,
        )
    timings["load_model"] = time.perf_counter() - start
    check_against_model(hyp, model.info)
    report("building prompts", 0, 1)
    templates = None if settings.templates is None else list(settings.templates)
    dataset = hypothesis_dataset(
        hyp, model.tokenizer, default_prepend_bos=model.info.default_prepend_bos,
        n_prompts=settings.n_prompts, seed=settings.seed, templates=templates,
    )
    held = held_out_status(hyp, dataset, model.tokenizer, in_sample=settings.in_sample, templates=templates)

    with torch.no_grad():
        report("clean and corrupted runs", 0, 1)
        ctx = RunContext(hyp, model, dataset, settings)
        work = ctx.work
        edges = []
        with work.at("edges"):
            for i, edge in enumerate(ctx.circuit.edges):
                report(f"edge {edge.name}", i, len(ctx.circuit.edges))
                edges.append(verify_edge(ctx, edge))
        report("edges", len(edges), len(edges))

        circuit, measured = (None, None)
        if settings.scores:
            report("circuit scores", 0, 1)
            with work.at("circuit_scores"):
                if settings.quick:
                    circuit = claims.quick_scores(ctx)
                else:
                    circuit, measured = claims.circuit_scores(ctx)
            if circuit is not None and hyp.graph == "mib":
                report("MIB's graph", 0, 1)
                with work.at("mib_graph"):
                    circuit = replace(circuit, faithfulness_mib=verify_score(ctx))

        robustness = None
        if settings.robustness:
            report("robustness panel", 0, 1)
            with work.at("robustness"):
                robustness = claims.robustness(ctx, edges, measured)
        timings.update(work.seconds)

    return assemble(hyp, model, dataset, ctx, edges, circuit, robustness, timings, held)


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
    passed = (all(word == "verified" for word in claimed) and not ctx.settings.quick
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
        task=R.TaskInfo(hyp.task.kind, len(dataset), ctx.seed, hyp.task.corruption, dataset.prepend_bos, notes,
                        _templates(dataset)),
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
        settings=ctx.settings.record(
            engine=ctx.engine.name,  # the engine that ran: "reference" after a fast-engine fallback
            mean_pool=None if ctx.built_mean_pool is None else ctx.built_mean_pool.info(),
            bootstrap_unit=ctx.bootstrap_unit, clusters=ctx.clusters, device=str(model.bridge.W_U.device)),
        versions=_versions(),
        timings={k: round(v, 3) for k, v in timings.items()},
        work={k: round(v, 3) for k, v in ctx.work.forward_equivalents().items()},
        robustness=robustness,
        mode="quick" if ctx.settings.quick else "full",
        held_out=None if held is None else held.held_out,
        held_out_info=None if held is None else held.info(),
    )
    split = breakdown(result, n_boot=ctx.n_boot, seed=ctx.seed, level=ctx.level)
    return replace(result, breakdown=split or None)


def _templates(dataset: Dataset) -> list[int] | None:
    """The template ids the generator was restricted to (None: all of them, or custom prompts)."""
    ids = (dataset.notes or {}).get("templates")
    return None if ids is None else [int(t) for t in ids]
