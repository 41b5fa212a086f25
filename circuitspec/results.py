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

from circuitspec.errors import ResultFileError
from circuitspec.output.atomic import atomic_write_text
from circuitspec.records.edges import (
    EdgeResult,
    Expectation,
    HeadEffect,
    MetricResult,
    NullDistribution,
)
from circuitspec.records.fields import Verdict, _num, _req
from circuitspec.records.run_info import (
    HypothesisInfo,
    ModelInfo,
    NodeInfo,
    Settings,
    TaskInfo,
    Versions,
)
from circuitspec.records.scores import CircuitScores, Failure, RobustnessRow, Score
from circuitspec.spec.textfile import read_text

__all__ = [
    "CircuitScores", "EdgeResult", "Expectation", "Failure", "HeadEffect", "HypothesisInfo",
    "MetricResult", "ModelInfo", "NodeInfo", "NullDistribution", "Result", "ResultFileError",
    "RobustnessRow", "Score", "Settings", "TaskInfo", "Verdict", "Versions",
]

SCHEMA_VERSION = 1


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
    (:mod:`circuitspec.scoring.breakdown`); ``None`` for tasks without IOI templates."""

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
