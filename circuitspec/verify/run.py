"""Verification: run every edge and every claim of a hypothesis, and judge them.

``verify`` is the whole of ``circuitspec verify``: load the model, build the
prompts, path-patch every edge (with a per-head breakdown and a random-sender
null), score the circuit (faithfulness, completeness, minimality with their
random-circuit null), add the robustness panel, and return a :class:`Result`
whose every number carries a bootstrap interval and every claim a verdict.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from circuitspec import claims
from circuitspec import results as R
from circuitspec.bridge.work import Work
from circuitspec.errors import CircuitSpecError
from circuitspec.held_out import HeldOut, held_out_status
from circuitspec.limits import LIMITS, check_limits
from circuitspec.scoring.edge_null import EdgeNullSetup, edge_null, judge_with_null
from circuitspec.scoring.nulls import MonteCarlo

if TYPE_CHECKING:
    from circuitspec.dataset import Dataset
    from circuitspec.engine import Receiver, Sender
    from circuitspec.models import LoadedModel
    from circuitspec.spec import Circuit, Edge, Hypothesis

EngineName = Literal["auto", "fast", "reference"]
QUICK_NULL = 20  # per-edge null draws under --quick: the fewest that can give p <= 0.05
Progress = Callable[[str, int, int], None]


@dataclass
class Options:
    """Run settings; ``None`` means 'as the hypothesis file says'."""

    n_prompts: int | None = None
    seed: int | None = None
    device: str | None = None
    semantics: str | None = None
    ablation: str | None = None
    ablation_level: str | None = None  # node | edge: where the faithfulness claim is judged
    freeze_mlps: bool | None = None
    engine: EngineName = "auto"
    n_bootstrap: int | None = None
    n_random: int = 100  # layer-matched random circuits, node-level faithfulness null (batched passes)
    n_random_edge: int = 20  # the same wired like the hypothesis, edge-level null (a few passes each)
    n_subsets: int = 20  # random K for completeness
    greedy_steps: int = 2  # greedy search for the worst K
    minimality_random: int = 0  # random K reused by minimality (each costs a run per head)
    n_null_edges: int = 100  # layer-matched random sender groups per edge (at least; 0: none)
    n_null_edges_max: int | None = None  # with more than n_null_edges, draw on until decided
    mean_pool_min: int | None = None  # pool prompts per mean (default mean_pool.DEFAULT_PER_MEAN)
    mean_pool_seed: int | None = None  # the pool's generator seed (default: the run's seed + 7919)
    in_sample: bool = False  # accept verification prompts that overlap the discovery prompts
    templates: list[int] | None = None  # IOI template ids to verify on (overrides task.templates)
    bootstrap: str = "template"  # template: resample templates as clusters; prompt: single prompts
    per_head: bool = True
    robustness: bool = True
    scores: bool = True
    quick: bool = False  # edges and faithfulness only, small nulls: a check that cannot pass
    extra: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        """Raise :class:`CircuitSpecError` naming every count or seed outside its range and
        every setting outside its choices, before any model work (a bad ``ablation`` used
        to fail only after every edge had been patched)."""
        bad = check_limits({k: getattr(self, k) for k in LIMITS if hasattr(self, k)})
        for key, allowed in CHOICES.items():
            value = getattr(self, key)
            if value is not None and value not in allowed:
                bad.append(f"{key} {value!r}: choose one of {', '.join(allowed)}")
        if bad:
            raise CircuitSpecError("; ".join(bad))


# Closed choices of the run settings; ``None`` means "as the hypothesis file says".
CHOICES: dict[str, tuple[str, ...]] = {
    "semantics": ("path", "direct"),
    "ablation": ("mean", "resample", "zero"),
    "ablation_level": ("node", "edge"),
    "engine": ("auto", "fast", "reference"),
    "bootstrap": ("template", "prompt"),
}


def _head(head: tuple[int, int]) -> str:
    return f"L{head[0]}H{head[1]}"


def make_engine(model: LoadedModel, dataset: Dataset, name: EngineName = "auto",
                work: Work | None = None) -> Any:
    """The fast engine where it supports the model, else the exact reference engine."""
    from circuitspec.engine import ExactEngine

    if name == "reference":
        return ExactEngine(model, dataset, work)
    try:
        from circuitspec.fast import FastEngine
    except ImportError:
        if name == "fast":
            raise CircuitSpecError("the fast engine is not available in this installation") from None
        return ExactEngine(model, dataset, work)
    return FastEngine(model, dataset, work=work)


def run_work(model: LoadedModel, dataset: Dataset) -> Work:
    """A work counter whose unit is one full forward over ``dataset``'s clean prompts."""
    return Work(per_forward=sum(len(t) for t in dataset.clean) * model.info.n_layers)


def sweep(engine: Any, receiver: Receiver, senders: Sequence[Sender], **kw: Any) -> Any:
    """[n_senders, N] patched metric, each sender alone into ``receiver``: one batched
    pass where the engine can sweep, one patch per sender otherwise."""
    if hasattr(engine, "sweep"):
        return engine.sweep(receiver, list(senders), **kw)
    import torch

    return torch.stack([engine.patch(s, receiver, **kw) for s in senders])


def edge_endpoints(circuit: Circuit, edge: Edge) -> tuple[Sender, Receiver]:
    from circuitspec.engine import LOGITS, Receiver, Sender

    src = circuit.nodes[edge.sender]
    sender = Sender(heads=tuple(src.heads), mlps=tuple(src.mlps))
    if edge.receiver == "logits":
        return sender, LOGITS
    dst = circuit.nodes[edge.receiver]
    return sender, Receiver(heads=tuple(dst.heads), via=edge.via, at=edge.at)  # type: ignore[arg-type]


def effect_of(patched: np.ndarray, clean: np.ndarray, corrupt: np.ndarray) -> float:
    """(M_patched - M_clean) / (M_clean - M_corrupt), means over prompts."""
    return float((patched.mean() - clean.mean()) / (clean.mean() - corrupt.mean()))


def effect_ci(
    patched: np.ndarray, clean: np.ndarray, corrupt: np.ndarray, *, n: int, seed: int, level: float,
    clusters: Sequence[int] | None = None,
) -> tuple[float, float]:
    """Bootstrap interval of the effect, resampling prompts (or ``clusters`` of them) jointly."""
    from circuitspec.stats import bootstrap_paired_ci

    def stat(p: np.ndarray, c: np.ndarray, r: np.ndarray) -> np.ndarray:
        return (p.mean(1) - c.mean(1)) / (c.mean(1) - r.mean(1))

    return bootstrap_paired_ci([patched, clean, corrupt], stat, n_resamples=n, seed=seed, level=level,
                               clusters=clusters)


MIN_CLUSTERS = 8  # fewer templates than this make a cluster bootstrap unreliable


def bootstrap_clusters(dataset: Dataset, unit: str, kind: str) -> tuple[list[int] | None, str]:
    """The cluster labels the bootstrap resamples (the template of each prompt), and the unit
    used: prompt-level when asked, for custom prompts (no templates), or with too few templates."""
    if unit not in ("template", "prompt"):
        raise CircuitSpecError(f"bootstrap unit {unit!r}: choose template or prompt")
    if unit == "prompt" or kind != "ioi":
        return None, "prompt"
    if len(set(dataset.template)) < MIN_CLUSTERS:
        return None, f"prompt (only {len(set(dataset.template))} templates, fewer than {MIN_CLUSTERS})"
    return list(dataset.template), "template"


class Verifier:
    """Holds the loaded model, dataset and engine for one hypothesis run."""

    def __init__(
        self,
        hyp: Hypothesis,
        model: LoadedModel,
        dataset: Dataset,
        options: Options,
    ):
        self.hyp = hyp
        self.model = model
        self.dataset = dataset
        self.opts = options
        self.circuit = hyp.circuit()
        self.semantics = options.semantics or hyp.semantics
        self.ablation = options.ablation or hyp.ablation
        self.ablation_level = options.ablation_level or hyp.judged_level()
        if self.ablation_level not in ("node", "edge"):
            raise CircuitSpecError(f"ablation level {self.ablation_level!r}: choose node or edge")
        self.runners: dict[str, Any] = {}  # ablation kind -> AblationRunner, shared by the scores
        self.edge_scores: dict[str, Any] = {}  # ablation kind -> edge-level faithfulness computed
        self.freeze_mlps = hyp.freeze_mlps if options.freeze_mlps is None else options.freeze_mlps
        self.n_boot = options.n_bootstrap or hyp.claims.n_bootstrap
        self.level = hyp.claims.confidence
        self.seed = options.seed if options.seed is not None else (hyp.task.seed or 0)
        self.clusters, self.bootstrap_unit = bootstrap_clusters(dataset, options.bootstrap, hyp.task.kind)
        self._mean_pool: Any = None
        self.work = run_work(model, dataset)
        with self.work.at("caches"):
            self.engine = make_engine(model, dataset, options.engine, self.work)
        clean, corrupt = self.engine.baselines()
        self.clean = clean.double().numpy()
        self.corrupt = corrupt.double().numpy()

    def mean_pool(self) -> Any:
        """The separate pool mean ablation takes its means from, built on first use."""
        from circuitspec.mean_pool import DEFAULT_PER_MEAN, build_mean_pool, pool_seed

        if self._mean_pool is None:
            seed = self.opts.mean_pool_seed if self.opts.mean_pool_seed is not None else pool_seed(self.seed)
            with self.work.at("mean_pool"):
                self._mean_pool = build_mean_pool(
                    self.model, self.dataset, generate=self.hyp.task.kind == "ioi", seed=seed,
                    per_template_min=self.opts.mean_pool_min or DEFAULT_PER_MEAN, work=self.work)
        return self._mean_pool

    # -- edges -------------------------------------------------------------------------
    def _sweep(self, senders: list[Sender], receiver: Receiver, semantics: str | None = None) -> np.ndarray:
        """[n_senders, N] patched metric; one batched pass where the engine can sweep."""
        kw = {"semantics": semantics or self.semantics, "freeze_mlps": self.freeze_mlps}
        return sweep(self.engine, receiver, senders, **kw).double().numpy()

    def patched(self, sender: Sender, receiver: Receiver, semantics: str | None = None) -> np.ndarray:
        return self._sweep([sender], receiver, semantics)[0]

    def _effect_with_ci(self, patched: np.ndarray) -> tuple[float, tuple[float, float]]:
        value = effect_of(patched, self.clean, self.corrupt)
        ci = effect_ci(patched, self.clean, self.corrupt, n=self.n_boot, seed=self.seed, level=self.level,
                       clusters=self.clusters)
        return value, ci

    def edge(self, edge: Edge) -> R.EdgeResult:
        from circuitspec.engine import Sender
        from circuitspec.stats import verdict

        sender, receiver = edge_endpoints(self.circuit, edge)
        # The joint patch and each sender component alone: one sweep; the null's draws: more.
        alone: list[tuple[str, Sender]] = []
        if self.opts.per_head and len(sender.heads) + len(sender.mlps) > 1:
            alone = [(_head(h), Sender(heads=(h,))) for h in sender.heads]
            alone += [(f"MLP{m}", Sender(mlps=(m,))) for m in sender.mlps]
        rows = self._sweep([sender] + [s for _, s in alone], receiver)
        patched = rows[0]
        value, ci = self._effect_with_ci(patched)
        word, reason = verdict(ci, edge.min_effect, edge.sign)  # type: ignore[arg-type]
        per_head = [
            R.HeadEffect(name, *self._effect_with_ci(row))
            for (name, _), row in zip(alone, rows[1 : 1 + len(alone)], strict=True)
        ]
        draws = None  # the run asked for no null (n_null_edges=0); a sentence: the edge has none
        if self.opts.n_null_edges:
            with self.work.at("edge_nulls"):
                draws = edge_null(edge.name, sender, receiver, value, edge.sign,
                                  lambda group: self._sweep(group, receiver), self.clean, self.corrupt,
                                  self._null_setup())
        word, reason = judge_with_null(word, reason, ci, draws, edge.sign, 1 - self.level)
        null = claims.null_result(draws if not isinstance(draws, str) else None)
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

    def _null_setup(self) -> EdgeNullSetup:
        n = self.opts.n_null_edges
        rule = MonteCarlo(n_min=n, n_max=max(n, self.opts.n_null_edges_max or n), batch=n,
                          alpha=1 - self.level)
        return EdgeNullSetup(self.model.info.n_layers, self.model.info.n_heads,
                             frozenset(self.circuit.heads()), frozenset(self.circuit.mlps()), self.seed, rule)


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

    ``hypothesis`` is a file path or a loaded :class:`~circuitspec.spec.Hypothesis`;
    ``model`` a loaded model (loaded from the file's reference when omitted). Keyword
    overrides set :class:`Options` fields (``n_prompts=32, engine="reference"``...).
    """
    import torch

    from circuitspec.models import load_model
    from circuitspec.spec import Hypothesis, check_against_model, load_hypothesis
    from circuitspec.tasks import hypothesis_dataset

    opts = options or Options()
    for key, value in overrides.items():
        if not hasattr(opts, key):
            raise TypeError(f"verify() got an unknown option {key!r}")
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
        verifier = Verifier(hyp, model, dataset, opts)
        work = verifier.work
        edges = []
        with work.at("edges"):
            for i, edge in enumerate(verifier.circuit.edges):
                report(f"edge {edge.name}", i, len(verifier.circuit.edges))
                edges.append(verifier.edge(edge))
        report("edges", len(edges), len(edges))

        circuit, raw = (None, None)
        if opts.scores:
            report("circuit scores", 0, 1)
            with work.at("circuit_scores"):
                if opts.quick:
                    circuit = claims.quick_scores(verifier)
                else:
                    circuit, raw = claims.circuit_scores(verifier)

        robustness = None
        if opts.robustness:
            report("robustness panel", 0, 1)
            with work.at("robustness"):
                robustness = claims.robustness(verifier, edges, raw)
        timings.update(work.seconds)

    return assemble(hyp, model, dataset, verifier, edges, circuit, robustness, timings, held)


def _statistics(verifier: Verifier) -> dict[str, Any]:
    """The settings behind the intervals and nulls, as they were used."""
    o = verifier.opts
    return {"seed": verifier.seed, "level": verifier.level, "n_null_edges": o.n_null_edges,
            "n_null_edges_max": o.n_null_edges_max, "n_random": o.n_random, "n_random_edge": o.n_random_edge,
            "n_subsets": o.n_subsets, "greedy_steps": o.greedy_steps, "templates": o.templates,
            "in_sample": o.in_sample, "quick": o.quick}


def assemble(
    hyp: Hypothesis,
    model: LoadedModel,
    dataset: Dataset,
    verifier: Verifier,
    edges: list[R.EdgeResult],
    circuit: R.CircuitScores | None,
    robustness: tuple[R.RobustnessRow, ...] | None,
    timings: dict[str, float],
    held: HeldOut | None = None,
) -> R.Result:
    from circuitspec.stats import bootstrap_ci

    nodes = tuple(
        R.NodeInfo(n.name, n.role, tuple(_head(h) for h in n.heads), tuple(n.mlps))
        for n in verifier.circuit.nodes.values()
    )
    claimed = [e.verdict for e in edges]
    if circuit is not None:
        claimed += [s.verdict for s in circuit.scores().values() if s.verdict is not None]
    # A quick check leaves claims unchecked, so it never passes (the CLI exits 3 if it held);
    # nor does an in-sample run without --in-sample.
    passed = (all(word == "verified" for word in claimed) and not verifier.opts.quick
              and not (held is not None and held.blocks))
    info = model.info
    notes = ", ".join(f"{k}={v}" for k, v in dataset.notes.items()) if dataset.notes else None
    if hyp.task.n_prompts is not None and len(dataset) != hyp.task.n_prompts:
        notes = (notes + "; " if notes else "") + (
            f"ran on {len(dataset)} prompts where the file says n_prompts: {hyp.task.n_prompts}")
    boot: dict[str, Any] = {"n_resamples": verifier.n_boot, "seed": verifier.seed, "level": verifier.level,
                            "clusters": verifier.clusters}
    return R.Result(
        hypothesis=R.HypothesisInfo(hyp.name, hyp.source, hyp.description, nodes),
        model=R.ModelInfo(model.reference, info.name, model.revision, info.n_layers, info.n_heads, info.n_kv_heads),
        task=R.TaskInfo(hyp.task.kind, len(dataset), verifier.seed, hyp.task.corruption, dataset.prepend_bos, notes),
        metric=R.MetricResult(
            "logit_diff",
            float(verifier.clean.mean()),
            float(verifier.corrupt.mean()),
            bootstrap_ci(verifier.clean, **boot),
            bootstrap_ci(verifier.corrupt, **boot),
            {"clean": verifier.clean.tolist(), "corrupt": verifier.corrupt.tolist(),
             "template": list(dataset.template)},
        ),
        edges=tuple(edges),
        circuit=circuit,
        passed=passed,
        settings=R.Settings(
            verifier.semantics, verifier.ablation, verifier.freeze_mlps, verifier.engine.name, verifier.n_boot,
            verifier.ablation_level, hyp.ablation_scope,
            None if verifier._mean_pool is None else verifier._mean_pool.info(),
            verifier.bootstrap_unit,
            _statistics(verifier),
        ),
        versions=_versions(),
        timings={k: round(v, 3) for k, v in timings.items()},
        work={k: round(v, 3) for k, v in verifier.work.forward_equivalents().items()},
        robustness=robustness,
        mode="quick" if verifier.opts.quick else "full",
        held_out=None if held is None else held.held_out,
        held_out_info=None if held is None else held.info(),
    )
