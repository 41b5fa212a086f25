"""The run settings of ``verify``: every option, its closed choices and ranges, resolved once.

:class:`Options` holds what the caller asked (``None``: as the hypothesis file says);
:func:`resolve` checks it (a value outside its choices or range is refused) and puts it
over the hypothesis file's values, before any model work, giving the frozen
:class:`RunSettings` that every stage reads and that results.json ``settings`` is written
from (:meth:`RunSettings.record`). :func:`bootstrap_clusters` decides the unit the
bootstrap resamples.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from circuitspec.bridge.device import check_device
from circuitspec.data.ioi import BABA_TEMPLATES
from circuitspec.errors import CircuitSpecError
from circuitspec.records.run_info import Settings
from circuitspec.scoring.stats import cluster_widening
from circuitspec.verification.limits import LIMITS, check_limits

if TYPE_CHECKING:  # annotations only: importing the engines would import torch
    from circuitspec.ablation.replacement import AblationKind
    from circuitspec.data.dataset import Dataset
    from circuitspec.patching.engine import EngineName
    from circuitspec.patching.types import Semantics
    from circuitspec.spec.schema import Hypothesis

__all__ = ["CHOICES", "QUICK_NULL", "QUICK_PROMPTS", "Options", "RunSettings", "bootstrap_clusters", "resolve"]

QUICK_NULL = 20  # per-edge null draws under --quick: the fewest that can give p <= 0.05
# Prompts under --quick when the file asks for more and --n-prompts is not given: the inner loop
# of someone editing a file (the SmolLM2 file's 128 took 88 s on 2 cores, 64 about half).
QUICK_PROMPTS = 64


@dataclass
class Options:
    """What the caller asks for; ``None`` means "as the hypothesis file says". :func:`resolve`
    turns it into the :class:`RunSettings` a run uses."""

    n_prompts: int | None = None
    seed: int | None = None
    device: str | None = None
    semantics: Semantics | None = None
    ablation: AblationKind | None = None
    ablation_level: Literal["node", "edge"] | None = None  # where the faithfulness claim is judged
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
    bootstrap: Literal["template", "prompt"] = "template"  # template: resample templates as clusters; prompt: single prompts
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


@dataclass(frozen=True)
class RunSettings:
    """The settings one verify run uses: the options over the hypothesis file's values,
    resolved and checked once before any model work (:func:`resolve`). Every stage reads
    this; results.json ``settings`` is written from it (:meth:`record`)."""

    semantics: Semantics
    ablation: AblationKind
    ablation_level: Literal["node", "edge"]  # where the faithfulness claim is judged
    ablation_scope: Literal["all_positions", "circuit_positions"]
    edge_positions: Literal["at", "every"]  # where an edge carries signal in edge-level runs
    freeze_mlps: bool
    engine: EngineName  # as asked; the engine that ran is recorded (a fallback is the exact one)
    n_prompts: int | None  # None: the task's own (every custom prompt; the IOI default)
    seed: int  # prompts, bootstrap and nulls
    device: str
    n_bootstrap: int
    level: float  # confidence level of every interval
    n_random: int
    n_random_edge: int
    n_subsets: int
    greedy_steps: int
    minimality_random: int
    n_null_edges: int
    n_null_edges_max: int | None
    mean_pool_min: int | None
    mean_pool_seed: int | None
    in_sample: bool
    templates: tuple[int, ...] | None
    bootstrap: Literal["template", "prompt"]
    per_head: bool
    robustness: bool
    scores: bool
    quick: bool
    file_n_prompts: int | None = None  # the file's count, where --quick verifies fewer

    def statistics(self, clusters: Sequence[int] | None) -> dict[str, Any]:
        """The settings behind the intervals and nulls, as results.json ``settings.statistics``."""
        return {"seed": self.seed, "level": self.level, "n_null_edges": self.n_null_edges,
                "n_null_edges_max": self.n_null_edges_max, "n_random": self.n_random,
                "n_random_edge": self.n_random_edge, "n_subsets": self.n_subsets,
                "greedy_steps": self.greedy_steps,
                "templates": None if self.templates is None else list(self.templates),
                "in_sample": self.in_sample, "quick": self.quick,
                **({"quick_prompts": f"{self.n_prompts} of the file's {self.file_n_prompts} prompts"}
                   if self.file_n_prompts is not None else {}),
                # What the bootstrap resamples as one cluster: a BABA template with its ABBA mirror.
                "cluster": None if clusters is None else f"template mod {len(BABA_TEMPLATES)}",
                # How an interval recomputes from the per-prompt values: the percentile interval of
                # the resampled statistic, widened around the estimate for few clusters.
                "interval": "percentile" if clusters is None else
                            "percentile, widened around the estimate by sqrt(G/(G-1)) t_{G-1}/z (G clusters)",
                "n_clusters": None if clusters is None else len(set(clusters)),
                "widening": None if clusters is None else cluster_widening(len(set(clusters)), self.level)}

    def record(self, *, engine: str, mean_pool: Mapping[str, Any] | None, bootstrap_unit: str,
               clusters: Sequence[int] | None, device: str | None = None) -> Settings:
        """results.json ``settings``: these settings, with what only the run knows (the engine
        that really ran, the mean pool it built, the bootstrap unit its prompts allowed, the
        device the model was on)."""
        return Settings(self.semantics, self.ablation, self.freeze_mlps, engine, self.n_bootstrap,
                        self.ablation_level, self.ablation_scope, mean_pool, bootstrap_unit,
                        self.statistics(clusters), self.edge_positions, device)


def resolve(hyp: Hypothesis, options: Options) -> RunSettings:
    """The run's settings: ``options`` checked, then put over the file's values. ``--quick``
    caps the per-edge null and, unless ``n_prompts`` is given, the prompts (:data:`QUICK_PROMPTS`),
    and drops the robustness panel. ``options`` is not changed."""
    options.check()
    o, claims = options, hyp.claims
    level = o.ablation_level or hyp.judged_level()
    if level not in ("node", "edge"):
        raise CircuitSpecError(f"ablation level {level!r}: choose node or edge")
    # Edges carry signal only at their ``at`` position by default: that is the claim their path
    # patching tests (``ablation_scope: circuit_positions`` implies it for the node level too).
    at = hyp.edge_positions == "at" or hyp.ablation_scope == "circuit_positions"
    device = check_device(hyp, o.device)
    n_prompts = o.n_prompts if o.n_prompts is not None else hyp.task.n_prompts
    fewer = o.quick and o.n_prompts is None and n_prompts is not None and n_prompts > QUICK_PROMPTS
    return RunSettings(
        semantics=o.semantics or hyp.semantics, ablation=o.ablation or hyp.ablation,
        ablation_level=level,  # type: ignore[arg-type]
        ablation_scope=hyp.ablation_scope, edge_positions="at" if at else "every",
        freeze_mlps=hyp.freeze_mlps if o.freeze_mlps is None else o.freeze_mlps, engine=o.engine,
        n_prompts=QUICK_PROMPTS if fewer else n_prompts, file_n_prompts=n_prompts if fewer else None,
        seed=o.seed if o.seed is not None else (hyp.task.seed or 0),
        device=device,
        n_bootstrap=o.n_bootstrap or claims.n_bootstrap, level=claims.confidence,
        n_random=o.n_random, n_random_edge=o.n_random_edge, n_subsets=o.n_subsets,
        greedy_steps=o.greedy_steps, minimality_random=o.minimality_random,
        n_null_edges=min(o.n_null_edges, QUICK_NULL) if o.quick else o.n_null_edges,
        n_null_edges_max=None if o.quick else o.n_null_edges_max,
        mean_pool_min=o.mean_pool_min, mean_pool_seed=o.mean_pool_seed, in_sample=o.in_sample,
        templates=None if o.templates is None else tuple(o.templates), bootstrap=o.bootstrap,
        per_head=o.per_head, robustness=o.robustness and not o.quick, scores=o.scores, quick=o.quick,
    )


# Closed choices of the run settings; ``None`` means "as the hypothesis file says".
CHOICES: dict[str, tuple[str, ...]] = {
    "semantics": ("path", "direct"),
    "ablation": ("mean", "resample", "zero"),
    "ablation_level": ("node", "edge"),
    "engine": ("auto", "fast", "reference"),
    "bootstrap": ("template", "prompt"),
}


# A cluster bootstrap needs two clusters; few of them are widened (stats.cluster_widening). The
# bar was 8 template pairs, below which prompts were resampled as if independent: with 4 pairs
# and a template effect that "95 %" interval covered 73 % (docs/reviews/statistics-2026-12-05.md), the widened cluster
# interval 96 %, and held-out-by-template runs are exactly the runs with few pairs.
MIN_CLUSTERS = 2


def bootstrap_clusters(dataset: Dataset, unit: str, kind: str) -> tuple[list[int] | None, str]:
    """The cluster labels the bootstrap resamples (the template of each prompt), and the unit
    used: prompt-level when asked, for custom prompts (no templates), or with too few templates."""
    if unit not in ("template", "prompt"):
        raise CircuitSpecError(f"bootstrap unit {unit!r}: choose template or prompt")
    if unit == "prompt" or kind != "ioi":
        return None, "prompt"
    # A BABA template and its ABBA mirror share every word but the order of the pair: one
    # cluster, not two independent ones (counting them apart made intervals too narrow).
    pairs = [t % len(BABA_TEMPLATES) for t in dataset.template]
    if len(set(pairs)) < MIN_CLUSTERS:
        return None, (f"prompt (only {len(set(pairs))} template pair: its prompts are resampled as if "
                      "independent, and nothing is said about other templates)")
    return pairs, "template"
