"""The records of the edges of a Result: the metric baselines, each edge's effect, interval,
verdict, per-head breakdown and null, as ``results.json`` holds them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from circuitspec.records.fields import (
    Interval,
    Verdict,
    _at,
    _at_json,
    _ci,
    _ci_json,
    _num,
    _req,
    _verdict,
)

__all__ = ["EdgeResult", "Expectation", "HeadEffect", "MetricResult", "NullDistribution"]


@dataclass(frozen=True)
class MetricResult:
    """The task metric on unpatched runs: logit(correct) - logit(incorrect) at the end."""

    name: str
    """Metric name; ``logit_diff``."""
    clean: float | None
    """Mean metric over clean prompts, M_clean."""
    corrupt: float | None
    """Mean metric over corrupted prompts, M_corrupt."""
    clean_ci: Interval | None = None
    """Bootstrap interval of ``clean``."""
    corrupt_ci: Interval | None = None
    """Bootstrap interval of ``corrupt``."""
    per_prompt: Mapping[str, Any] | None = None
    """Per-prompt values: ``clean`` and ``corrupt`` metric, ``template`` id, so every
    interval can be recomputed from the file."""

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "clean": _num(self.clean), "corrupt": _num(self.corrupt),
             "clean_ci": _ci_json(self.clean_ci), "corrupt_ci": _ci_json(self.corrupt_ci)}
        if self.per_prompt is not None:
            d["per_prompt"] = _per_prompt_json(self.per_prompt)
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> MetricResult:
        return cls(_req(d, "name", "metric"), _num(_req(d, "clean", "metric")),
                   _num(_req(d, "corrupt", "metric")), _ci(d.get("clean_ci")), _ci(d.get("corrupt_ci")),
                   d.get("per_prompt"))


def _per_prompt_json(values: Mapping[str, Any]) -> dict[str, Any]:
    """Lists of per-prompt numbers (non-finite as null); integer lists (template ids) kept."""
    return {k: [v if isinstance(v, int) else _num(v) for v in seq] for k, seq in values.items()}


# --- edges ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expectation:
    """What the hypothesis claims about an edge's effect."""

    sign: str | None = "negative"
    """``negative`` (patching hurts the metric), ``positive`` or ``any``."""
    min_effect: float | None = None
    """Smallest |effect| that counts as real; the verdict threshold."""

    def to_json(self) -> dict[str, Any]:
        return {"sign": self.sign, "min_effect": _num(self.min_effect)}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Expectation:
        return cls(d.get("sign"), _num(d.get("min_effect")))


@dataclass(frozen=True)
class HeadEffect:
    """Effect of patching one sender head alone along the edge (the per-head breakdown)."""

    head: str
    """The head, e.g. ``"L9H9"``."""
    effect: float | None
    """Normalised effect of this head alone."""
    ci: Interval | None = None
    """Bootstrap interval of ``effect``."""

    def to_json(self) -> dict[str, Any]:
        return {"head": self.head, "effect": _num(self.effect), "ci": _ci_json(self.ci)}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> HeadEffect:
        return cls(_req(d, "head", "per_head[]"), _num(d.get("effect")), _ci(d.get("ci")))


@dataclass(frozen=True)
class NullDistribution:
    """Effects of random stand-ins (random sender heads, random circuits) for comparison."""

    mean: float | None
    """Mean of the null samples."""
    low: float | None
    """Lower quantile of the null samples."""
    high: float | None
    """Upper quantile of the null samples."""
    n: int
    """Number of null samples."""
    real: float | None = None
    """The real value compared with the samples (the circuit's faithfulness), if any."""
    fraction_beaten: float | None = None
    """Fraction of the samples that ``real`` exceeds."""
    p_value: float | None = None
    """(1 + #samples at least as extreme as real) / (1 + n)."""
    kind: str | None = None
    """How the samples were drawn: ``layer_matched`` (random heads of the same layers, outside
    the hypothesis; see :mod:`circuitspec.scoring.nulls`)."""
    off_layer: int | None = None
    """Heads, over all samples, placed outside their layer because it had too few spare heads."""
    nonfinite: int | None = None
    """Samples that were NaN or infinite: counted as at least as extreme, left out of the band."""
    layers: tuple[int, ...] | None = None
    """Per-edge null: the layers the random sender groups' heads came from."""
    widened: bool | None = None
    """Per-edge null: True when the senders' own layers had too few distinct groups, so heads
    came from the nearest other layers too (the groups are then not layer-matched)."""
    n_distinct: int | None = None
    """Per-edge null: how many distinct random sender groups there were to draw from."""

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"mean": _num(self.mean), "low": _num(self.low), "high": _num(self.high),
                             "n": self.n}
        for key in ("real", "fraction_beaten", "p_value"):
            if getattr(self, key) is not None:
                d[key] = _num(getattr(self, key))
        if self.kind is not None:
            d["kind"] = self.kind
        for key in ("off_layer", "nonfinite", "layers", "widened", "n_distinct"):
            if getattr(self, key) is not None:
                d[key] = list(self.layers or ()) if key == "layers" else getattr(self, key)
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any] | None) -> NullDistribution | None:
        if d is None:
            return None
        def opt_int(key: str) -> int | None:
            return None if d.get(key) is None else int(d[key])

        layers = d.get("layers")
        return cls(_num(d.get("mean")), _num(d.get("low")), _num(d.get("high")), int(_req(d, "n", "null")),
                   _num(d.get("real")), _num(d.get("fraction_beaten")), _num(d.get("p_value")),
                   d.get("kind"), opt_int("off_layer"), opt_int("nonfinite"),
                   None if layers is None else tuple(int(x) for x in layers), d.get("widened"), opt_int("n_distinct"))


@dataclass(frozen=True)
class EdgeResult:
    """The path-patching verdict on one edge of the hypothesis."""

    sender: str
    """Sending node group (JSON ``from``)."""
    receiver: str
    """Receiving node group, or ``logits`` (JSON ``to``)."""
    via: str | None
    """Receiver input the path enters through: ``q``, ``k``, ``v``; ``None`` into logits."""
    at: str | tuple[str, ...] | None
    """Position label(s) where the receiver reads the path, e.g. ``END``, ``S2``, ``S1+1``."""
    metric_patched: float | None
    """Mean metric with the path patched, M_patched."""
    effect: float | None
    """(M_patched - M_clean) / (M_clean - M_corrupt)."""
    ci: Interval | None
    """Bootstrap interval of ``effect``."""
    verdict: Verdict
    """Whether the edge carries the claimed effect."""
    reason: str = ""
    """One sentence on why the verdict was reached."""
    expect: Expectation = field(default_factory=Expectation)
    """The claim the verdict was judged against."""
    per_head: tuple[HeadEffect, ...] = ()
    """Each sender head patched alone."""
    null: NullDistribution | None = None
    """Effects of random sender groups of the same size, if computed."""
    per_prompt: tuple[float | None, ...] | None = None
    """The patched metric on each prompt (same order as ``metric.per_prompt``)."""

    @property
    def name(self) -> str:
        """Stable edge id, as ``spec.Edge.name``: ``sender->receiver.via@at``."""
        at = ",".join(self.at) if isinstance(self.at, tuple) else self.at
        return f"{self.sender}->{self.receiver}" + (f".{self.via}" if self.via else "") + (
            f"@{at}" if at else "")

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "from": self.sender, "to": self.receiver, "via": self.via, "at": _at_json(self.at),
            "metric_patched": _num(self.metric_patched), "effect": _num(self.effect),
            "ci": _ci_json(self.ci), "verdict": self.verdict, "reason": self.reason,
            "expect": self.expect.to_json(), "per_head": [h.to_json() for h in self.per_head],
        }
        if self.null is not None:
            d["null"] = self.null.to_json()
        if self.per_prompt is not None:
            d["per_prompt"] = [_num(x) for x in self.per_prompt]
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> EdgeResult:
        w = "edges[]"
        return cls(
            _req(d, "from", w), _req(d, "to", w), d.get("via"), _at(d.get("at")),
            _num(d.get("metric_patched")), _num(_req(d, "effect", w)), _ci(d.get("ci")),
            _verdict(_req(d, "verdict", w), f"edge {d.get('from')}->{d.get('to')}"),
            d.get("reason", ""), Expectation.from_json(d.get("expect") or {}),
            tuple(HeadEffect.from_json(h) for h in d.get("per_head", ())),
            NullDistribution.from_json(d.get("null")),
            None if d.get("per_prompt") is None else tuple(_num(x) for x in d["per_prompt"]),
        )


# --- circuit scores -------------------------------------------------------------------------
