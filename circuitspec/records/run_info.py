"""What a verification run was about and how it ran: the ``results.json`` context.

The hypothesis (its nodes), the model, the task, the run settings and the library
versions: everything needed to reproduce a :class:`~circuitspec.results.Result`,
none of its findings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field

from circuitspec.records.fields import CONFIG, LOADS_AS_NONE, OMIT_NONE

__all__ = ["HypothesisInfo", "ModelInfo", "NodeInfo", "Settings", "TaskInfo", "Versions"]

# What ``settings.mean_pool`` and ``settings.statistics`` hold (open objects).
MEAN_POOL_SCHEMA: dict[str, Any] = {
    "required": ["n", "per_template_min", "seed", "built", "sufficient"],
    "properties": {"n": {"type": "integer"}, "per_template_min": {"type": "integer"},
                   "smallest_mean": {"type": "integer"}, "seed": {"type": ["integer", "null"]},
                   "grouping": {"type": "string"}, "counts": {"type": "object"},
                   "key": {"type": "string", "description": "What a mean is keyed by: layout "
                           "(token length and named positions)."},
                   "n_means": {"type": "integer"}, "per_mean": {"type": "integer"},
                   "excluded": {"type": "integer"},
                   "disjoint": {"type": "boolean"}, "sufficient": {"type": "boolean"},
                   "built": {"type": "string"}},
}
STATISTICS_SCHEMA: dict[str, Any] = {
    "properties": {"seed": {"type": "integer"}, "level": {"type": ["number", "null"]},
                   "n_null_edges": {"type": "integer"}},
}

# --- hypothesis, model, task ----------------------------------------------------------------


@dataclass(frozen=True)
class NodeInfo:
    """One named group of components in the hypothesis, copied into the result for rendering."""

    __pydantic_config__ = CONFIG

    name: str
    """Group name from the hypothesis file, e.g. ``name_movers``."""
    role: str = "other"
    """Functional role, e.g. ``name_mover``, ``s_inhibition``; drives the diagram colour."""
    heads: tuple[str, ...] = ()
    """Attention heads in the group, as ``"L9H9"`` strings."""
    mlps: tuple[int, ...] = ()
    """Layers whose MLP belongs to the group."""


@dataclass(frozen=True)
class HypothesisInfo:
    """Which hypothesis was checked."""

    __pydantic_config__ = CONFIG

    name: str
    """The hypothesis ``name`` field."""
    path: str | None = None
    """The YAML file it was read from, if any."""
    description: str | None = None
    """Free-text description from the file."""
    nodes: tuple[NodeInfo, ...] = ()
    """The hypothesis's node groups (role and heads), so a result renders without the YAML."""


@dataclass(frozen=True)
class ModelInfo:
    """The model the hypothesis was checked on."""

    __pydantic_config__ = CONFIG

    reference: str
    """What the hypothesis file named: a packaged alias, a hub id or a local path."""
    name: str
    """The resolved model name, e.g. ``HuggingFaceTB/SmolLM2-135M-Instruct``."""
    revision: Annotated[str | None, LOADS_AS_NONE]
    """Hub revision or checkpoint hash, if known."""
    n_layers: int
    """Number of transformer blocks."""
    n_heads: int
    """Query heads per layer."""
    n_kv_heads: int
    """Key/value heads per layer (fewer than ``n_heads`` on grouped-query models)."""


@dataclass(frozen=True)
class TaskInfo:
    """The prompts the metric was measured on."""

    __pydantic_config__ = CONFIG

    kind: str
    """``ioi`` (built-in generator) or ``prompts`` (user-supplied)."""
    n_prompts: int
    """Number of clean/corrupted prompt pairs."""
    seed: int | None
    """Seed of the prompt generator and of the bootstrap."""
    corruption: str | None
    """How corrupted prompts were made: ``abc``, ``s_swap`` or ``custom``."""
    prepend_bos: bool
    """Whether a beginning-of-sequence token was prepended."""
    notes: str | None = None
    """Anything else worth knowing about the data (dropped prompts, templates used)."""
    templates: Annotated[list[int] | None, OMIT_NONE] = None
    """IOI template ids the prompts were drawn from, when restricted (the file's ``task.templates``
    or ``--templates``); None: every template, or prompts given in the file."""


# --- run context ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """How the run was configured."""

    __pydantic_config__ = CONFIG

    semantics: Literal["path", "direct"]
    """``path`` (Wang et al. path patching) or ``direct`` (ACDC-style edge patching)."""
    ablation: Literal["mean", "resample", "zero"]
    """How non-circuit heads are knocked out for circuit scores: ``mean``, ``resample``, ``zero``."""
    freeze_mlps: bool
    """Whether MLPs were frozen at clean values during path patching."""
    engine: str
    """Which patching implementation ran, ``fast`` or ``reference`` (the exact engine, also when the fast one fell
    back to it)."""
    n_bootstrap: int
    """Bootstrap resamples behind every interval."""
    ablation_level: Literal["node", "edge"] = "node"
    """Level the faithfulness claim is judged at: ``node`` (heads outside the circuit
    ablated) or ``edge`` (only the hypothesis' edges carry signal); both are reported."""
    ablation_scope: Literal["all_positions", "circuit_positions"] = "all_positions"
    """``circuit_positions``: circuit heads (node level) and edges (edge level) carry
    signal only at the positions the hypothesis' edges name."""
    mean_pool: Annotated[Mapping[str, Any] | None, Field(json_schema_extra=MEAN_POOL_SCHEMA)] = None
    """How the mean-ablation means were made (``n``, ``per_template_min``, ``seed``,
    ``built``, ``sufficient``...); ``None`` when no mean ablation ran."""
    bootstrap_unit: str = "prompt"
    """What the bootstrap resamples: ``template`` (whole templates, as clusters) or ``prompt``
    (with the reason when templates were asked for but too few)."""
    statistics: Annotated[Mapping[str, Any] | None, Field(json_schema_extra=STATISTICS_SCHEMA)] = None
    """Everything else an interval or null depends on, so a reader can recompute them: the
    bootstrap and null ``seed``, the confidence ``level``, ``n_null_edges`` (and its
    sequential maximum), ``n_random`` and ``n_random_edge`` (circuit nulls), ``n_subsets``
    and ``greedy_steps`` (completeness search), ``templates`` (an override of the task's
    templates), ``in_sample`` and ``quick``."""
    edge_positions: Literal["at", "every"] = "every"
    """``at``: in the edge-level run each edge carries signal only at its ``at`` position (the
    default since edges are judged where their path patching tests them); ``every``: at every
    position (files written before this field: ``every``)."""
    device: Annotated[str | None, OMIT_NONE] = None
    """The torch device the run computed on (``cpu``, ``cuda:0``; the output layer's device
    when the model was spread over several); absent in files written before this field."""


@dataclass(frozen=True)
class Versions:
    """Library versions the run used, for reproducibility (``None`` when not installed)."""

    __pydantic_config__ = CONFIG

    circuitspec: Annotated[str | None, LOADS_AS_NONE]
    torch: Annotated[str | None, LOADS_AS_NONE]
    transformer_lens: Annotated[str | None, LOADS_AS_NONE]
    transformers: Annotated[str | None, LOADS_AS_NONE]
    python: Annotated[str | None, LOADS_AS_NONE]
