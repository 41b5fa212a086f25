"""What a verification run was about and how it ran: the ``results.json`` context.

The hypothesis (its nodes), the model, the task, the run settings and the library
versions: everything needed to reproduce a :class:`~circuitspec.results.Result`,
none of its findings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from circuitspec.records.fields import _req

# --- hypothesis, model, task ----------------------------------------------------------------


@dataclass(frozen=True)
class NodeInfo:
    """One named group of components in the hypothesis, copied into the result for rendering."""

    name: str
    """Group name from the hypothesis file, e.g. ``name_movers``."""
    role: str = "other"
    """Functional role, e.g. ``name_mover``, ``s_inhibition``; drives the diagram colour."""
    heads: tuple[str, ...] = ()
    """Attention heads in the group, as ``"L9H9"`` strings."""
    mlps: tuple[int, ...] = ()
    """Layers whose MLP belongs to the group."""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "heads": list(self.heads), "mlps": list(self.mlps)}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> NodeInfo:
        return cls(_req(d, "name", "hypothesis.nodes[]"), d.get("role", "other"),
                   tuple(d.get("heads", ())), tuple(int(m) for m in d.get("mlps", ())))


@dataclass(frozen=True)
class HypothesisInfo:
    """Which hypothesis was checked."""

    name: str
    """The hypothesis ``name`` field."""
    path: str | None = None
    """The YAML file it was read from, if any."""
    description: str | None = None
    """Free-text description from the file."""
    nodes: tuple[NodeInfo, ...] = ()
    """The hypothesis's node groups (role and heads), so a result renders without the YAML."""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, "description": self.description,
                "nodes": [n.to_json() for n in self.nodes]}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> HypothesisInfo:
        return cls(_req(d, "name", "hypothesis"), d.get("path"), d.get("description"),
                   tuple(NodeInfo.from_json(n) for n in d.get("nodes", ())))


@dataclass(frozen=True)
class ModelInfo:
    """The model the hypothesis was checked on."""

    reference: str
    """What the hypothesis file named: a packaged alias, a hub id or a local path."""
    name: str
    """The resolved model name, e.g. ``HuggingFaceTB/SmolLM2-135M-Instruct``."""
    revision: str | None
    """Hub revision or checkpoint hash, if known."""
    n_layers: int
    """Number of transformer blocks."""
    n_heads: int
    """Query heads per layer."""
    n_kv_heads: int
    """Key/value heads per layer (fewer than ``n_heads`` on grouped-query models)."""

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ModelInfo:
        return cls(_req(d, "reference", "model"), _req(d, "name", "model"), d.get("revision"),
                   *(_req(d, k, "model") for k in ("n_layers", "n_heads", "n_kv_heads")))


@dataclass(frozen=True)
class TaskInfo:
    """The prompts the metric was measured on."""

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

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> TaskInfo:
        return cls(*(_req(d, k, "task") for k in
                     ("kind", "n_prompts", "seed", "corruption", "prepend_bos")), d.get("notes"))  # type: ignore[call-arg]




# --- run context ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """How the run was configured."""

    semantics: str
    """``path`` (Wang et al. path patching) or ``direct`` (ACDC-style edge patching)."""
    ablation: str
    """How non-circuit heads are knocked out for circuit scores: ``mean``, ``resample``, ``zero``."""
    freeze_mlps: bool
    """Whether MLPs were frozen at clean values during path patching."""
    engine: str
    """Which patching implementation ran, e.g. ``fast`` or ``naive``."""
    n_bootstrap: int
    """Bootstrap resamples behind every interval."""
    ablation_level: str = "node"
    """Level the faithfulness claim is judged at: ``node`` (heads outside the circuit
    ablated) or ``edge`` (only the hypothesis' edges carry signal); both are reported."""
    ablation_scope: str = "all_positions"
    """``circuit_positions``: circuit heads (node level) and edges (edge level) carry
    signal only at the positions the hypothesis' edges name."""
    mean_pool: Mapping[str, Any] | None = None
    """How the mean-ablation means were made (``n``, ``per_template_min``, ``seed``,
    ``built``, ``sufficient``...); ``None`` when no mean ablation ran."""
    bootstrap_unit: str = "prompt"
    """What the bootstrap resamples: ``template`` (whole templates, as clusters) or ``prompt``."""
    statistics: Mapping[str, Any] | None = None
    """Everything else an interval or null depends on, so a reader can recompute them: the
    bootstrap and null ``seed``, the confidence ``level``, ``n_null_edges`` (and its
    sequential maximum), ``n_random`` and ``n_random_edge`` (circuit nulls), ``n_subsets``
    and ``greedy_steps`` (completeness search), ``templates`` (an override of the task's
    templates), ``in_sample`` and ``quick``."""
    edge_positions: str = "every"
    """``at``: in the edge-level run each edge carries signal only at its ``at`` position (the
    default since edges are judged where their path patching tests them); ``every``: at every
    position (files written before this field: ``every``)."""

    def to_json(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["mean_pool"] = None if self.mean_pool is None else dict(self.mean_pool)
        d["statistics"] = None if self.statistics is None else dict(self.statistics)
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Settings:
        required = {k: _req(d, k, "settings") for k in
                    ("semantics", "ablation", "freeze_mlps", "engine", "n_bootstrap")}
        return cls(**required, ablation_level=d.get("ablation_level", "node"),
                   ablation_scope=d.get("ablation_scope", "all_positions"),
                   edge_positions=d.get("edge_positions", "every"), mean_pool=d.get("mean_pool"),
                   bootstrap_unit=d.get("bootstrap_unit", "prompt"), statistics=d.get("statistics"))


@dataclass(frozen=True)
class Versions:
    """Library versions the run used, for reproducibility (``None`` when not installed)."""

    circuitspec: str | None
    torch: str | None
    transformer_lens: str | None
    transformers: str | None
    python: str | None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Versions:
        return cls(*(d.get(k) for k in
                     ("circuitspec", "torch", "transformer_lens", "transformers", "python")))
