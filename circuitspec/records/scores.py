"""The records of the circuit claims of a Result: each score with its interval and verdict,
the robustness panel's rows, and the failures a report lists."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from circuitspec.records.edges import NullDistribution, _per_prompt_json
from circuitspec.records.fields import (
    Interval,
    Verdict,
    _ci,
    _ci_json,
    _num,
    _req,
    _verdict,
)

__all__ = ["CircuitScores", "Failure", "RobustnessRow", "Score"]


@dataclass(frozen=True)
class Score:
    """One circuit-level score (Wang et al. 2022, section 4) with its verdict."""

    value: float | None
    """The score, e.g. F(C) / F(M) for faithfulness."""
    ci: Interval | None
    """Bootstrap interval of ``value``."""
    verdict: Verdict | None
    """Verdict against the hypothesis's claim; ``None`` when the score is reported unclaimed."""
    reason: str = ""
    """One sentence on why the verdict was reached."""
    details: Mapping[str, Any] = field(default_factory=dict)
    """Score-specific extras (JSON values), e.g. the worst subset K for completeness."""
    per_prompt: Mapping[str, Any] | None = None
    """Faithfulness: ``{circuit: [F(C) per prompt], model: [F(M) per prompt]}``."""

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"value": _num(self.value), "ci": _ci_json(self.ci), "verdict": self.verdict,
             "reason": self.reason, "details": dict(self.details)}
        if self.per_prompt is not None:
            d["per_prompt"] = _per_prompt_json(self.per_prompt)
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any], where: str) -> Score:
        return cls(_num(_req(d, "value", where)), _ci(d.get("ci")),
                   _verdict(d.get("verdict"), where, optional=True), d.get("reason", ""),
                   dict(d.get("details") or {}), d.get("per_prompt"))


@dataclass(frozen=True)
class CircuitScores:
    """How well the circuit as a whole reproduces the model's behaviour."""

    faithfulness: Score
    """F(C) / F(M): metric of the circuit alone (rest ablated) over the full model's."""
    completeness: Score
    """Largest |F(C \\ K) - F(M \\ K)| over tested subsets K; small means nothing is missing."""
    minimality: Score
    """Smallest relative drop from removing one circuit node; large means no node is idle."""
    null: NullDistribution | None = None
    """Node-level faithfulness of layer-matched random circuits (each head mapped onto a random
    head of its layer outside the hypothesis), if computed."""
    f_model: float | None = None
    """F(M): metric of the full model under the same ablation setup."""
    f_circuit: float | None = None
    """F(C): metric with only the circuit's components left running."""
    faithfulness_edge_level: Score | None = None
    """F_edge(C) / F(M): only the hypothesis' edges carry signal between heads (see
    ``docs/semantics.md``); judged when ``ablation_level`` is ``edge``, else reported."""
    f_empty: float | None = None
    """F(∅): metric with every head ablated, the floor both faithfulness levels start from."""
    f_empty_ci: Interval | None = None
    """Bootstrap interval of ``f_empty``."""
    null_edge_level: NullDistribution | None = None
    """Edge-level faithfulness of layer-matched random circuits wired like the hypothesis."""
    faithfulness_mib: Score | None = None
    """MIB's faithfulness (m(C) - m(empty)) / (m(M) - m(empty)) on MIB's graph, where the input
    and every MLP are nodes (``graph: mib``); judged against the faithfulness band."""

    def scores(self) -> dict[str, Score]:
        """The scores by name, in report order (edge-level faithfulness when it was computed)."""
        out = {"faithfulness": self.faithfulness}
        if self.faithfulness_edge_level is not None:
            out["faithfulness_edge_level"] = self.faithfulness_edge_level
        if self.faithfulness_mib is not None:
            out["faithfulness_mib"] = self.faithfulness_mib
        return out | {"completeness": self.completeness, "minimality": self.minimality}

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {k: s.to_json() for k, s in self.scores().items()}
        if self.null is not None:
            d["null"] = self.null.to_json()
        if self.null_edge_level is not None:
            d["null_edge_level"] = self.null_edge_level.to_json()
        d["f_model"], d["f_circuit"] = _num(self.f_model), _num(self.f_circuit)
        if self.f_empty is not None:
            d["f_empty"], d["f_empty_ci"] = _num(self.f_empty), _ci_json(self.f_empty_ci)
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> CircuitScores:
        s = {k: Score.from_json(_req(d, k, "circuit"), f"circuit.{k}")
             for k in ("faithfulness", "completeness", "minimality")}
        edge, mib = d.get("faithfulness_edge_level"), d.get("faithfulness_mib")
        return cls(**s, null=NullDistribution.from_json(d.get("null")),
                   f_model=_num(d.get("f_model")), f_circuit=_num(d.get("f_circuit")),
                   faithfulness_edge_level=None if edge is None else Score.from_json(
                       edge, "circuit.faithfulness_edge_level"),
                   f_empty=_num(d.get("f_empty")), f_empty_ci=_ci(d.get("f_empty_ci")),
                   null_edge_level=NullDistribution.from_json(d.get("null_edge_level")),
                   faithfulness_mib=None if mib is None else Score.from_json(mib, "circuit.faithfulness_mib"))


@dataclass(frozen=True)
class RobustnessRow:
    """The circuit re-checked under one alternative setting (another ablation, seed, corruption)."""

    setting: str
    """What changed, e.g. ``ablation=resample`` or ``corruption=s_swap``."""
    faithfulness: float | None
    """Faithfulness under this setting."""
    edge_effects: Mapping[str, float | None] = field(default_factory=dict)
    """Effect per edge, keyed by :attr:`EdgeResult.name`."""
    ci: Interval | None = None
    """Bootstrap interval of ``faithfulness`` under this setting."""
    verdict: Verdict | None = None
    """``faithfulness`` judged against the hypothesis' band under this setting."""

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"setting": self.setting, "faithfulness": _num(self.faithfulness),
                             "edge_effects": {k: _num(v) for k, v in self.edge_effects.items()}}
        if self.ci is not None:
            d["ci"] = _ci_json(self.ci)
        if self.verdict is not None:
            d["verdict"] = self.verdict
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> RobustnessRow:
        return cls(_req(d, "setting", "robustness[]"), _num(d.get("faithfulness")),
                   {k: _num(v) for k, v in (d.get("edge_effects") or {}).items()},
                   _ci(d.get("ci")), _verdict(d.get("verdict"), "robustness[]", optional=True))

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
