"""The records of the circuit claims of a Result: each score with its interval and verdict,
the robustness panel's rows, and the failures a report lists."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import Field, SerializerFunctionWrapHandler, model_serializer

from circuitspec.records.edges import NullDistribution
from circuitspec.records.fields import (
    CONFIG,
    LOADS_AS_NONE,
    OMIT_NONE,
    Interval,
    Num,
    PerPrompt,
    Verdict,
)

__all__ = ["CircuitScores", "Failure", "RobustnessRow", "Score"]

_N = {"type": ["number", "null"]}
_CI = {"type": ["array", "null"], "items": _N, "minItems": 2, "maxItems": 2}

# What ``Score.details`` holds (an open object: each score adds its own extras).
DETAILS_SCHEMA: dict[str, Any] = {"properties": {
    "claim": {"enum": ["claimed", "default", "off", "reported"],
              "description": "Where the bar came from: written in the file, a default, or turned off."},
    "band": {"type": "array", "items": _N, "description": "Faithfulness [min, max] judged against."},
    "normalised": {"type": "object", "description": "(F(C) - F(empty)) / (F(M) - F(empty))",
                   "properties": {"value": _N, "ci": _CI}},
    "power": {"type": "object", "description": "Half-width reached; prompts a +-0.1 interval needs.",
              "properties": {"half_width": _N, "n_prompts": {"type": "integer"},
                             "n_prompts_needed": {"type": ["integer", "null"]},
                             "n_prompts_needed_is": {"type": "string", "description": (
                                 "exact under 1/sqrt(n) scaling, or a lower bound when the "
                                 "interval resamples template clusters")},
                             "n_clusters": {"type": "integer"}}},
    "nonfinite_resamples": {"type": "integer"},
    "post_selection": {"type": "boolean", "description": (
        "The number is the worst K (completeness) or weakest head (minimality) chosen on the "
        "prompts it is scored on; the verdict needs every K's (every head's) interval to clear "
        "the bar.")},
    "null": {"type": "object", "description": (
        "This level's circuit null (layer-matched random circuits); a verified verdict whose "
        "null is not beaten (p > alpha) is inconclusive.")},
    "by_order": {"type": "object", "description": "The score on BABA and ABBA prompts apart."},
    "mean_of_per_prompt_ratios": _N,
}}


@dataclass(frozen=True)
class Score:
    """One circuit-level score (Wang et al. 2022, section 4) with its verdict."""

    __pydantic_config__ = CONFIG

    value: Num
    """The score, e.g. F(C) / F(M) for faithfulness."""
    ci: Annotated[Interval | None, LOADS_AS_NONE]
    """Bootstrap interval of ``value``."""
    verdict: Annotated[Verdict | None, LOADS_AS_NONE]
    """Verdict against the hypothesis's claim; ``None`` when the score is reported unclaimed."""
    reason: str = ""
    """One sentence on why the verdict was reached."""
    details: Annotated[Mapping[str, Any], Field(json_schema_extra=DETAILS_SCHEMA)] = field(default_factory=dict)
    """Score-specific extras (JSON values), e.g. the worst subset K for completeness."""
    per_prompt: Annotated[PerPrompt | None, OMIT_NONE] = None
    """Faithfulness: ``{circuit: [F(C) per prompt], model: [F(M) per prompt], empty: [F(empty)
    per prompt]}``."""


@dataclass(frozen=True)
class CircuitScores:
    """How well the circuit as a whole reproduces the model's behaviour.

    Fields in ``results.json`` order; the optional scores and nulls are written when set,
    ``f_empty_ci`` with ``f_empty``."""

    __pydantic_config__ = CONFIG

    faithfulness: Score
    """F(C) / F(M): metric of the circuit alone (rest ablated) over the full model's."""
    faithfulness_edge_level: Annotated[Score | None, OMIT_NONE] = field(default=None, kw_only=True)
    """F_edge(C) / F(M): only the hypothesis' edges carry signal between heads (see
    ``docs/semantics.md``); judged when ``ablation_level`` is ``edge``, else reported."""
    faithfulness_mib: Annotated[Score | None, OMIT_NONE] = field(default=None, kw_only=True)
    """MIB's faithfulness (m(C) - m(empty)) / (m(M) - m(empty)) on MIB's graph, where the input
    and every MLP are nodes (``graph: mib``); judged against the faithfulness band."""
    completeness: Score
    """Largest |F(C \\ K) - F(M \\ K)| over tested subsets K; small means nothing is missing."""
    minimality: Score
    """Smallest relative drop from removing one circuit node; large means no node is idle."""
    null: Annotated[NullDistribution | None, OMIT_NONE] = None
    """Node-level faithfulness of layer-matched random circuits (each head mapped onto a random
    head of its layer outside the hypothesis), if computed."""
    null_edge_level: Annotated[NullDistribution | None, OMIT_NONE] = field(default=None, kw_only=True)
    """Edge-level faithfulness of layer-matched random circuits wired like the hypothesis."""
    f_model: Num = None
    """F(M): metric of the full model under the same ablation setup."""
    f_circuit: Num = None
    """F(C): metric with only the circuit's components left running."""
    f_empty: Num = None
    """F(∅): metric with every head ablated, the floor both faithfulness levels start from."""
    f_empty_ci: Interval | None = None
    """Bootstrap interval of ``f_empty``."""

    def scores(self) -> dict[str, Score]:
        """The scores by name, in report order (edge-level faithfulness when it was computed)."""
        out = {"faithfulness": self.faithfulness}
        if self.faithfulness_edge_level is not None:
            out["faithfulness_edge_level"] = self.faithfulness_edge_level
        if self.faithfulness_mib is not None:
            out["faithfulness_mib"] = self.faithfulness_mib
        return out | {"completeness": self.completeness, "minimality": self.minimality}

    @model_serializer(mode="wrap")
    def _empty_with_its_interval(self, write: SerializerFunctionWrapHandler) -> dict[str, Any]:
        d: dict[str, Any] = write(self)
        if self.f_empty is None:
            d.pop("f_empty", None), d.pop("f_empty_ci", None)
        return d


@dataclass(frozen=True)
class RobustnessRow:
    """The circuit re-checked under one alternative setting (another ablation, seed, corruption)."""

    __pydantic_config__ = CONFIG

    setting: str
    """What changed, e.g. ``ablation=resample`` or ``corruption=s_swap``."""
    faithfulness: Annotated[Num, LOADS_AS_NONE]
    """Faithfulness under this setting."""
    edge_effects: Mapping[str, Num] = field(default_factory=dict)
    """Effect per edge, keyed by :attr:`EdgeResult.name`."""
    ci: Annotated[Interval | None, OMIT_NONE] = None
    """Bootstrap interval of ``faithfulness`` under this setting."""
    verdict: Annotated[Verdict | None, OMIT_NONE] = None
    """``faithfulness`` judged against the hypothesis' band under this setting."""

@dataclass(frozen=True)
class Failure:
    """One edge or claim that did not verify, and why."""

    what: str
    """``edge s_inhibition->name_movers.q@END`` or ``claim faithfulness``."""
    verdict: Verdict
    """``refuted`` or ``inconclusive``."""
    reason: str
    """Why, as recorded by the verifier."""

    def __str__(self) -> str:
        return f"{self.what}: {self.verdict}" + (f" ({self.reason})" if self.reason else "")
