"""The result of verifying a circuit hypothesis, and its ``results.json`` form.

A :class:`Result` is what ``circuitspec verify`` produces: a verdict for every
edge of the hypothesis (from path patching), circuit-level scores
(faithfulness, completeness, minimality) with bootstrap intervals and verdicts,
and everything needed to reproduce the run (model, task, settings, versions).

Everything here is a frozen dataclass. The JSON keys are a contract that other
tools read (see ``DESIGN.md``); Python attribute names may differ where a JSON
key is a Python keyword (``from`` is :attr:`EdgeResult.sender`, ``to`` is
:attr:`EdgeResult.receiver`). Non-finite floats (NaN, infinity) are written as
JSON ``null`` so the file stays valid JSON. Unknown keys are ignored when
loading, so files written by newer versions still load.

Effects follow ``DESIGN.md``: ``effect = (M_patched - M_clean) / (M_clean -
M_corrupt)``, so 0 is no effect and -1 is the whole clean-to-corrupt gap.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from circuitspec.result_fields import (
    Interval,
    ResultFileError,
    Verdict,
    _at,
    _at_json,
    _ci,
    _ci_json,
    _num,
    _req,
    _verdict,
)
from circuitspec.run_info import HypothesisInfo, ModelInfo, NodeInfo, Settings, TaskInfo, Versions
from circuitspec.textfile import read_text

__all__ = [
    "CircuitScores", "EdgeResult", "Expectation", "Failure", "HeadEffect", "HypothesisInfo",
    "MetricResult", "ModelInfo", "NodeInfo", "NullDistribution", "Result", "ResultFileError",
    "RobustnessRow", "Score", "Settings", "TaskInfo", "Verdict", "Versions",
]

SCHEMA_VERSION = 1


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


@dataclass(frozen=True)
class Result:
    """Everything ``circuitspec verify`` found; serialises to ``results.json``."""

    hypothesis: HypothesisInfo
    model: ModelInfo
    task: TaskInfo
    metric: MetricResult
    edges: tuple[EdgeResult, ...]
    """One entry per hypothesis edge, in file order."""
    circuit: CircuitScores | None
    """Circuit-level scores; ``None`` if only edges were checked."""
    passed: bool
    """True when every edge and every claim is verified (exit status 0)."""
    settings: Settings
    versions: Versions
    timings: Mapping[str, float] = field(default_factory=dict)
    """Wall-clock seconds per stage, e.g. ``{"load_model": 3.1, "edges": 12.4}``; a stage inside
    another (``edge_nulls`` inside ``edges``) is not counted again in the outer one."""
    robustness: tuple[RobustnessRow, ...] | None = None
    """The robustness panel, if one was run."""
    work: Mapping[str, float] = field(default_factory=dict)
    """Work per stage in forward-equivalents: token-layers recomputed over those of one full
    forward pass on the run's prompts (:mod:`circuitspec.bridge.work`)."""
    mode: str = "full"
    """``full``, or ``quick`` (``verify --quick``: edges and faithfulness only, small nulls;
    such a result never passes)."""
    held_out: bool | None = None
    """Whether the verification prompts are disjoint from the discovery prompts the
    hypothesis records (``None``: it records none); an in-sample run passes only with
    ``--in-sample``."""
    held_out_info: Mapping[str, Any] | None = None
    """The held-out check: ``overlap``, ``n_discovery``, ``templates_disjoint``, ``in_sample``,
    ``reason``."""
    breakdown: Mapping[str, Any] | None = None
    """Every score with per-prompt values (edge effects, faithfulness at both levels) split
    ``by_order`` (BABA vs ABBA) and ``by_template``, each ``{n, value, ci}``
    (:mod:`circuitspec.breakdown`); ``None`` for tasks without IOI templates."""

    def failures(self) -> list[Failure]:
        """Every edge and claimed score whose verdict is not ``verified``, in report order."""
        out = []
        info = self.held_out_info or {}
        if self.held_out is False and not info.get("in_sample"):
            out.append(Failure("held-out prompts", "inconclusive", str(info.get("reason", ""))))
        out += [Failure(f"edge {e.name}", e.verdict, e.reason)
                for e in self.edges if e.verdict != "verified"]
        if self.circuit is not None:
            out += [Failure(f"claim {k}", s.verdict, s.reason)
                    for k, s in self.circuit.scores().items()
                    if s.verdict is not None and s.verdict != "verified"]
        return out

    def render(self, path: str | os.PathLike[str]) -> Path:
        """Draw the verified circuit to ``path`` (``.svg``, ``.png`` or ``.dot``)."""
        from circuitspec.rendering import render_result

        return render_result(self, path)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "hypothesis": self.hypothesis.to_json(), "model": self.model.to_json(),
            "task": self.task.to_json(), "metric": self.metric.to_json(),
            "edges": [e.to_json() for e in self.edges],
            "circuit": None if self.circuit is None else self.circuit.to_json(),
            "passed": bool(self.passed), "settings": self.settings.to_json(),
            "versions": self.versions.to_json(),
            "timings": {k: _num(v) for k, v in self.timings.items()},
            "work": {k: _num(v) for k, v in self.work.items()},
            "mode": self.mode,
        }
        if self.robustness is not None:
            d["robustness"] = [r.to_json() for r in self.robustness]
        if self.held_out_info is not None:
            d["held_out"], d["held_out_info"] = self.held_out, dict(self.held_out_info)
        if self.breakdown:
            d["breakdown"] = dict(self.breakdown)
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Result:
        """Build a Result from parsed ``results.json``; raises :class:`ResultFileError`."""
        r = "results.json"
        circuit = _req(d, "circuit", r)
        robustness = d.get("robustness")

        def part(where: str, read: Any, value: Any) -> Any:
            # A bad value is named by the section (and item) it sits in.
            try:
                return read(value)
            except (TypeError, ValueError, AttributeError, KeyError) as exc:
                raise ResultFileError(f"{where}: malformed value ({exc})") from exc

        def items(key: str, read: Any, value: Any) -> tuple[Any, ...]:
            if not isinstance(value, list):
                raise ResultFileError(f"{key}: expected a list, got {type(value).__name__}")
            return tuple(part(f"{key}[{i}]", read, x) for i, x in enumerate(value))

        return cls(
            part("hypothesis", HypothesisInfo.from_json, _req(d, "hypothesis", r)),
            part("model", ModelInfo.from_json, _req(d, "model", r)),
            part("task", TaskInfo.from_json, _req(d, "task", r)),
            part("metric", MetricResult.from_json, _req(d, "metric", r)),
            items("edges", EdgeResult.from_json, _req(d, "edges", r)),
            None if circuit is None else part("circuit", CircuitScores.from_json, circuit),
            bool(_req(d, "passed", r)),
            part("settings", Settings.from_json, _req(d, "settings", r)),
            part("versions", Versions.from_json, _req(d, "versions", r)),
            part("timings", lambda t: dict((t or {}).items()), d.get("timings")),
            None if robustness is None else items("robustness", RobustnessRow.from_json, robustness),
            part("work", lambda t: dict((t or {}).items()), d.get("work")),
            str(d.get("mode", "full")),
            d.get("held_out"),
            part("held_out_info", lambda t: None if t is None else dict(t.items()), d.get("held_out_info")),
            part("breakdown", lambda t: None if t is None else dict(t.items()), d.get("breakdown")),
        )

    def dumps(self) -> str:
        """``results.json`` text: indented, key order fixed, strict JSON."""
        return json.dumps(self.to_json(), indent=2, allow_nan=False) + "\n"

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``results.json`` atomically."""
        from circuitspec.atomic import atomic_write_text

        return atomic_write_text(path, self.dumps())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Result:
        """Read a ``results.json``; raises :class:`ResultFileError` naming the file if invalid."""
        try:
            data = json.loads(read_text(path, "results file"))
            return cls.from_json(data)
        except json.JSONDecodeError as exc:
            raise ResultFileError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from exc
        except ResultFileError as exc:
            raise ResultFileError(f"{path}: {exc}") from exc
