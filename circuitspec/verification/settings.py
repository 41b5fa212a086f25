"""The run settings of ``verify``: every option, its closed choices and ranges, checked once.

:class:`Options` holds what the caller asked (``None``: as the hypothesis file says);
:meth:`Options.check` refuses a value outside its choices or range before any model
work. :func:`bootstrap_clusters` decides the unit the bootstrap resamples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from circuitspec.data.ioi import BABA_TEMPLATES
from circuitspec.errors import CircuitSpecError
from circuitspec.verification.limits import LIMITS, check_limits

if TYPE_CHECKING:  # annotations only: importing the engines would import torch
    from circuitspec.ablation.replacement import AblationKind
    from circuitspec.data.dataset import Dataset
    from circuitspec.patching.engine import EngineName
    from circuitspec.patching.types import Semantics

__all__ = ["CHOICES", "QUICK_NULL", "Options", "bootstrap_clusters"]

QUICK_NULL = 20  # per-edge null draws under --quick: the fewest that can give p <= 0.05


@dataclass
class Options:
    """Run settings; ``None`` means 'as the hypothesis file says'."""

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
