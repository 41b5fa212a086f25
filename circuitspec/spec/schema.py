"""The hypothesis file: a typed, located description of a circuit and how to test it.

Users write YAML; :func:`circuitspec.spec.load.load_hypothesis` parses it with a safe YAML composer that
keeps the line and column of every key, validates it with the pydantic models
below (unknown keys forbidden, closed choices as ``Literal``), then runs the
semantic checks that need the whole file (edges between known groups, in forward
order, at positions the task defines). Every problem found becomes a located
:class:`~circuitspec.errors.Problem`, and all of them are raised together in one
:class:`~circuitspec.errors.HypothesisError`.

Inside the package the circuit is a frozen graph (:mod:`circuitspec.spec.circuit`), built by
:meth:`Hypothesis.circuit`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

from circuitspec.errors import Problem
from circuitspec.spec.circuit import Circuit, Edge, Node, default_sign
from circuitspec.spec.heads import parse_member
from circuitspec.spec.locate import Loc, locate

__all__ = ["INPUT", "Hypothesis", "field_names", "json_schema"]

Role = Literal[
    "name_mover", "backup_name_mover", "negative_name_mover", "s_inhibition",
    "induction", "duplicate_token", "previous_token", "other",
]

INPUT = "input"
"""The sender name of the token embedding, an edge source under ``graph: mib`` only."""


def _member(ref: str) -> str:
    parse_member(ref)
    return ref


class _Strict(BaseModel):
    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, use_attribute_docstrings=True, frozen=True
    )


class ModelSpec(_Strict):
    """A model reference with loading options."""

    name: str
    """Packaged alias (smollm2-135m-instruct), Hugging Face id, or local save_pretrained folder."""
    revision: str | None = None
    """Hub revision (branch, tag or commit), e.g. step143000 for a Pythia checkpoint."""
    dtype: Literal["float32", "float64", "bfloat16", "float16"] = "float32"
    """Weights dtype for the run."""
    device: str = "cpu"
    """Torch device, e.g. cpu or cuda."""
    device_map: str | dict[str, str | int] | None = None
    """Spread a model too big for one GPU: auto, balanced, or {module: device}; replaces device."""
    n_devices: int | None = Field(default=None, ge=1)
    """Split the model over this many CUDA devices (balanced); replaces device."""


class PromptRecord(_Strict):
    """One clean/corrupted prompt pair with its answers (inline or one JSONL line)."""

    clean: str
    """The prompt the model should solve."""
    corrupted: str
    """The same prompt with the information removed; must tokenize to the same length."""
    correct: str
    """The answer on the clean prompt; one token, usually with a leading space (" Mary")."""
    incorrect: str
    """The competing answer (" John"); the metric is logit(correct) - logit(incorrect)."""
    positions: dict[str, int] | None = None
    """Named token positions {NAME: index}; negative indices count from the end."""


class TaskSpec(_Strict):
    """Which prompts the circuit is tested on."""

    kind: Literal["ioi", "prompts"]
    """ioi: the built-in IOI generator; prompts: your own prompt pairs."""
    n_prompts: int | None = Field(default=None, ge=1)
    """How many prompts (ioi default 128; prompts default: all of them)."""
    seed: int = Field(default=0, ge=0)
    """Seed of the IOI generator (names, templates, corruption)."""
    corruption: Literal["abc", "s_swap", "custom"] | None = None
    """abc: three fresh names; s_swap: S2 becomes the other name; custom: your corrupted prompts."""
    prompts: list[PromptRecord] | None = None
    """Inline prompt pairs (kind: prompts)."""
    file: str | None = None
    """A JSONL file of prompt pairs, relative to the hypothesis file (kind: prompts)."""
    builtin: Literal["notebook"] | None = None
    """A packaged prompt set: notebook = the eight prompts of the Pythia IOI notebook."""
    templates: list[Annotated[int, Field(ge=0, le=29)]] | None = Field(default=None, min_length=1)
    """IOI template ids to draw from (0-14 BABA, 15-29 their ABBA mirrors); omitted: all.
    Templates kept apart from ``discovery.templates`` make a held-out-by-template test."""


class DiscoverySpec(_Strict):
    """How the circuit was found: the prompts its heads and edges were chosen on. ``verify``
    checks that its own prompts are disjoint from these (``results.json`` ``held_out``)."""

    seed: int
    """Seed of the IOI generator the discovery ran on."""
    n_prompts: int = Field(ge=1)
    """How many prompts the discovery used (the first n of that seed)."""
    templates: list[Annotated[int, Field(ge=0, le=29)]] | None = Field(default=None, min_length=1)
    """Template ids the discovery drew from; omitted: all."""
    corruption: Literal["abc", "s_swap"] = "abc"
    """Corruption of the discovery prompts: abc draws extra names per prompt and s_swap pairs
    prompts, so the same seed names different prompts under each (``suggest`` writes it)."""

    @model_validator(mode="after")
    def _paired(self) -> DiscoverySpec:
        if self.corruption == "s_swap" and self.n_prompts % 2:
            raise ValueError(f"s_swap pairs prompts, so n_prompts must be even, not {self.n_prompts}")
        return self


class NodeSpec(_Strict):
    """A named group of heads and MLPs that plays one role."""

    role: Role
    """What the group does in the circuit (name_mover, s_inhibition, induction, ...)."""
    heads: list[Annotated[str, AfterValidator(_member)]]
    """Members: heads as L9H9 or 9.9, MLPs as MLP3."""
    description: str | None = None
    """Free text, shown in reports."""


class Expectation(_Strict):
    """What the patched edge should do to the metric."""

    sign: Literal["negative", "positive", "any"] | None = None
    """Expected sign of the effect (default: negative, positive for negative name movers)."""
    min_effect: float | None = Field(default=None, ge=0)
    """Smallest |effect| that counts as verified (default claims.edges.min_effect or 0.05)."""


class EdgeSpec(_Strict):
    """A path from a sender group into a receiver group's q, k or v (or the logits)."""

    sender: str = Field(alias="from")
    """The sending group (a key of nodes)."""
    receiver: str = Field(alias="to")
    """The receiving group, or logits."""
    via: Literal["q", "k", "v"] | None = None
    """Which input of the receiver the path enters; omitted for logits."""
    at: str = "END"
    """The token position where the receiver reads the path (END, IO, S1, S1+1, S2, ...)."""
    expect: Expectation | None = None
    """Per-edge expectation, overriding claims.edges."""


class Bound(_Strict):
    """A two-sided band for F(C)/F(M): the circuit should neither fall short nor overshoot."""

    min: float = Field(gt=0, le=2)
    """Lower bound on F(C)/F(M), in (0, 2]."""
    max: float | None = Field(default=None, gt=0)
    """Upper bound on F(C)/F(M); omitted: 2 - min (|1 - F(C)/F(M)| <= 1 - min, as MIB
    judges |1 - f|). With min >= 1 there is no such default: give max (``.inf`` for a
    one-sided claim, under which an overshooting circuit passes)."""

    @model_validator(mode="after")
    def _ordered(self) -> Bound:
        if self.max is not None and self.max <= self.min:
            raise ValueError(f"max ({self.max}) must be larger than min ({self.min})")
        if self.max is None and self.min >= 1:
            # The mirrored default 2 - min would lie at or below min; silently dropping the upper
            # end made `min: 1.0` a one-sided claim that an overshooting circuit passes.
            raise ValueError(f"min {self.min} >= 1 leaves no default max (2 - min); give max, e.g. "
                             f"max: {self.min + 0.2:g}, or max: .inf for a one-sided claim")
        return self

    @property
    def band(self) -> tuple[float, float | None]:
        """(min, max) with the default max applied."""
        if self.max is not None:
            return self.min, self.max
        return self.min, 2.0 - self.min


class GapBound(_Strict):
    max_gap: float = Field(ge=0)
    """Largest allowed |F(C \\ K) - F(M \\ K)| / |F(M)|."""


class MinimalityBound(_Strict):
    min: float = Field(ge=0)
    """Smallest relative drop every circuit node must cause."""


class EdgeClaims(_Strict):
    min_effect: float = Field(default=0.05, ge=0)
    """Default smallest |effect| for an edge to be verified."""
    sign: Literal["negative", "positive", "any"] | None = None
    """Default expected sign for every edge."""


CLAIM_NAMES = ("faithfulness", "completeness", "minimality")
MIN_CONFIDENCE = 0.95  # the lowest claims.confidence: below it every interval narrows and every alpha grows


class Claims(_Strict):
    """Circuit-level claims, as in Wang et al. 2022 section 4. A claim left out is judged
    against its default (:data:`DEFAULT_CLAIMS`); ``completeness: off`` turns one off."""

    faithfulness: Bound | None = None
    """F(C)/F(M) within [min, max]; omitted: the default band 0.8-1.2."""
    completeness: GapBound | None = None
    """Incompleteness gap at most max_gap; omitted: the default 0.15 (Wang et al.'s scale)."""
    minimality: MinimalityBound | None = None
    """Every head's relative drop at least min; omitted: the default 0.02."""
    off: list[Literal["faithfulness", "completeness", "minimality"]] = []
    """Claims turned off (``completeness: off`` lands here): reported, never judged."""
    edges: EdgeClaims | None = None
    """Defaults for every edge's expectation (``min_effect``, ``sign``); an edge's own ``expect`` wins."""
    confidence: float = Field(default=0.95, ge=MIN_CONFIDENCE, lt=1)
    """Confidence level of the bootstrap intervals and of every null's test (alpha = 1 -
    confidence), at least 0.95: a lower level narrows every interval and raises every alpha."""
    n_bootstrap: int = Field(default=1000, ge=10)
    """Bootstrap resamples over prompts."""

    @field_validator("confidence", mode="before")
    @classmethod
    def _no_lower_bar(cls, value: Any) -> Any:
        # Before the ge constraint, so the message says why (the constraint stays for the JSON Schema).
        if isinstance(value, int | float) and not isinstance(value, bool) and value < MIN_CONFIDENCE:
            raise ValueError(f"confidence {value:g} is below {MIN_CONFIDENCE}: a lower confidence would lower "
                             "every bar (narrower intervals, a larger alpha for every null); use 0.95 or more")
        return value

    @model_validator(mode="before")
    @classmethod
    def _turned_off(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        off = [k for k in CLAIM_NAMES if data.get(k) in ("off", False)]
        if not off:
            return data
        rest = {k: v for k, v in data.items() if k not in off}
        return rest | {"off": sorted(set(rest.get("off", [])) | set(off))}

    def resolved(self) -> dict[str, tuple[Any, str]]:
        """Each circuit claim as judged: ``(bound or None, "claimed" | "default" | "off")``."""
        out: dict[str, tuple[Any, str]] = {}
        for name in CLAIM_NAMES:
            given = getattr(self, name)
            if name in self.off:
                out[name] = (None, "off")
            elif given is not None:
                out[name] = (given, "claimed")
            else:
                out[name] = (DEFAULT_CLAIMS[name], "default")
        return out


DEFAULT_CLAIMS: dict[str, Any] = {"faithfulness": Bound(min=0.8, max=1.2),
                                  "completeness": GapBound(max_gap=0.15),
                                  "minimality": MinimalityBound(min=0.02)}
"""What a claim left out of the file is judged against."""


class Hypothesis(_Strict):
    """A circuit hypothesis: model, task, node groups, edges and claims."""

    name: str
    """Short identifier, used in reports."""
    description: str | None = None
    """Free text, shown in reports."""
    model: str | ModelSpec
    """A model reference, or a mapping {name, revision, dtype, device}."""
    task: TaskSpec
    """Which prompts to test on."""
    discovery: DiscoverySpec | None = None
    """How the circuit was found (written by ``suggest``); verify must use other prompts."""
    prepend_bos: bool | None = None
    """Prepend the BOS token; omitted: the model family's default."""
    metric: Literal["logit_diff"] = "logit_diff"
    """logit(correct) - logit(incorrect) at END, averaged over prompts."""
    nodes: dict[str, NodeSpec]
    """Named groups of heads and MLPs."""
    edges: list[EdgeSpec] = []
    """Paths between groups, each tested by patching."""
    semantics: Literal["path", "direct"] = "path"
    """path: Wang et al. path patching; direct: edge patching as in ACDC."""
    freeze_mlps: bool = False
    """Also freeze MLPs at their clean values during path patching."""
    ablation: Literal["mean", "resample", "zero"] = "mean"
    """How heads outside the circuit are knocked out for the circuit scores."""
    ablation_scope: Literal["all_positions", "circuit_positions"] = "all_positions"
    """circuit_positions: circuit heads also ablated away from the positions edges use."""
    edge_positions: Literal["at", "every"] = "at"
    """Where an edge carries clean signal in the edge-level circuit run: ``at`` (default) only
    at its ``at`` position, the position its path patching tests (logits edges read END), so
    an edge placed at the wrong position does not pass; ``every``: at every position (the
    receiver then reads the sender's clean output wherever it attends)."""
    ablation_level: Literal["node", "edge"] | None = None
    """Level the faithfulness claim is judged at: node (heads outside the circuit ablated) or
    edge (only the listed edges carry signal between heads); both are reported. Omitted: edge
    when the hypothesis has edges between groups (the wiring is then part of the claim),
    node otherwise."""
    graph: Literal["circuitspec", "mib"] = "circuitspec"
    """The computational graph the circuit is scored on. circuitspec: the token embeddings stay
    clean and every MLP runs (circuitspec's own scores). mib: also as the MIB circuit track scores
    it (EAP-IG's graph): the input embedding and every MLP are graph nodes, so only the
    file's edges carry the clean prompt's signal and every other edge (input -> head,
    MLP -> head, head -> MLP, ...) carries the corrupted prompt's; verify adds
    ``circuit.faithfulness_mib``, MIB's (m(C) - m(empty)) / (m(M) - m(empty)), judged
    against the faithfulness band. Only here may an edge come ``from: input``."""
    claims: Claims = Claims()
    """Circuit-level claims."""

    _source: str = PrivateAttr(default="<hypothesis>")
    _locations: dict[Loc, tuple[int, int]] = PrivateAttr(default_factory=dict)

    @property
    def model_name(self) -> str:
        return self.model if isinstance(self.model, str) else self.model.name

    @property
    def model_spec(self) -> ModelSpec:
        return ModelSpec(name=self.model) if isinstance(self.model, str) else self.model

    @property
    def source(self) -> str:
        """The file this hypothesis was loaded from."""
        return self._source

    def resolve_prepend_bos(self, default: bool) -> bool:
        return default if self.prepend_bos is None else self.prepend_bos

    def problem(self, loc: Loc, message: str) -> Problem:
        """A Problem located at the YAML node for ``loc`` (or its nearest ancestor)."""
        return locate(loc, message, self._locations)

    def judged_level(self) -> str:
        """The level the faithfulness claim is judged at: the file's ``ablation_level``, else
        edge when some edge runs between two groups (not only into the logits), else node."""
        if self.ablation_level is not None:
            return self.ablation_level
        return "edge" if any(e.receiver != "logits" and not self.is_input(e) for e in self.edges) else "node"

    def is_input(self, edge: EdgeSpec) -> bool:
        """Whether ``edge`` comes from the token embedding (``from: input`` under graph: mib)."""
        return self.graph == "mib" and edge.sender == INPUT

    def circuit(self) -> Circuit:
        """The frozen runtime graph this file describes."""
        nodes = {}
        for name, spec in self.nodes.items():
            members = [parse_member(m) for m in spec.heads]
            heads = tuple((lay, h) for kind, lay, h in members if kind == "head" and h is not None)
            mlps = tuple(lay for kind, lay, _ in members if kind == "mlp")
            nodes[name] = Node(name, spec.role, heads, mlps)
        defaults = self.claims.edges or EdgeClaims()
        edges = []
        for e in self.edges:
            if self.is_input(e):  # a graph edge for graph: mib only; the embeddings stay clean here
                continue
            expect = e.expect or Expectation()
            role = nodes[e.sender].role if e.sender in nodes else "other"
            sign = expect.sign or defaults.sign or default_sign(role)
            min_effect = expect.min_effect if expect.min_effect is not None else defaults.min_effect
            receiver = "logits" if e.receiver == "logits" else e.receiver
            edges.append(Edge(e.sender, receiver, e.via, e.at, sign, min_effect))
        return Circuit(nodes, tuple(edges))


def json_schema() -> dict[str, Any]:
    """The JSON Schema of hypothesis files (keys as users write them, e.g. ``from``)."""
    schema = Hypothesis.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def field_names() -> list[str]:
    """Every key a hypothesis file may use anywhere, for 'did you mean'."""
    models = [v for v in globals().values()
              if isinstance(v, type) and issubclass(v, BaseModel) and v.__module__ == __name__]
    return sorted({f.alias or n for m in models for n, f in m.model_fields.items()})
