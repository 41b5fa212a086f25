"""The result of verifying a circuit hypothesis, and its ``results.json`` form.

A :class:`Result` is what ``circuitspec verify`` produces: a verdict for every
edge of the hypothesis (from path patching), circuit-level scores
(faithfulness, completeness, minimality) with bootstrap intervals and verdicts,
and everything needed to reproduce the run (model, task, settings, versions).

Everything here is a frozen dataclass, and this module is the one place that reads and
writes ``results.json``: through a pydantic ``TypeAdapter`` over the dataclasses, which also
gives its JSON Schema (``circuitspec schema --results``, :mod:`circuitspec.results_schema`).
The JSON keys are a contract that other tools read (see ``DESIGN.md``); Python attribute
names may differ where a JSON key is a Python keyword (``from`` is
:attr:`EdgeResult.sender`, ``to`` is :attr:`EdgeResult.receiver`). How a field is written
is said in its type (:mod:`circuitspec.records.fields`): non-finite floats (NaN, infinity)
become JSON ``null`` so the file stays valid JSON, and optional parts are left out when
unset. Unknown keys are ignored when loading, so files written by newer versions still
load; keys that older files lack take their defaults.

Effects follow ``DESIGN.md``: ``effect = (M_patched - M_clean) / (M_clean -
M_corrupt)``, so 0 is no effect and -1 is the whole clean-to-corrupt gap.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    SerializerFunctionWrapHandler,
    TypeAdapter,
    ValidationError,
    model_serializer,
)

from circuitspec.errors import ResultFileError
from circuitspec.output.atomic import atomic_write_text
from circuitspec.records.edges import (
    EdgeResult,
    Expectation,
    HeadEffect,
    MetricResult,
    NullDistribution,
)
from circuitspec.records.fields import CONFIG, OMIT_NONE, Num, Verdict
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
    "RobustnessRow", "Score", "Settings", "TaskInfo", "Verdict", "Versions", "as_json",
]

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Result:
    """Everything ``circuitspec verify`` found; serialises to ``results.json``.

    Fields in ``results.json`` order; ``held_out`` and ``held_out_info`` are written together
    when the run checked held-out prompts, ``breakdown`` when it has any split."""

    __pydantic_config__ = CONFIG

    schema_version: int = field(default=SCHEMA_VERSION, kw_only=True)
    """The version of this layout; fields are only ever added within a version."""
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
    timings: Mapping[str, Num] = field(default_factory=dict)
    """Wall-clock seconds per stage, e.g. ``{"load_model": 3.1, "edges": 12.4}``; a stage inside
    another (``edge_nulls`` inside ``edges``) is not counted again in the outer one."""
    work: Mapping[str, Num] = field(default_factory=dict)
    """Work per stage in forward-equivalents: token-layers recomputed over those of one full
    forward pass on the run's prompts (:mod:`circuitspec.bridge.work`)."""
    mode: Literal["full", "quick"] = "full"
    """``full``, or ``quick`` (``verify --quick``: edges and faithfulness only, small nulls;
    such a result never passes)."""
    robustness: Annotated[tuple[RobustnessRow, ...] | None, OMIT_NONE] = None
    """The robustness panel, if one was run."""
    held_out: bool | None = None
    """Whether the verification prompts are disjoint from the discovery prompts the
    hypothesis records (``None``: it records none); an in-sample run passes only with
    ``--in-sample``."""
    held_out_info: Mapping[str, Any] | None = None
    """The held-out check: ``overlap``, ``n_discovery``, ``templates_disjoint``, ``in_sample``,
    ``reason``."""
    breakdown: Annotated[Mapping[str, Any] | None, Field(exclude_if=lambda value: not value)] = None
    """Every score with per-prompt values (edge effects, faithfulness at both levels) split
    ``by_order`` (BABA vs ABBA) and ``by_template``, each ``{n, value, ci, unit}`` (``unit``: what
    the interval resamples, template clusters by order when the run's bootstrap did, else
    prompts; :mod:`circuitspec.scoring.breakdown`); ``None`` for tasks without IOI templates."""

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
        """The ``results.json`` object: contract keys, non-finite numbers as ``None``."""
        return as_json(self)

    @classmethod
    def from_json(cls, d: Any) -> Result:
        """Build a Result from parsed ``results.json``; raises :class:`ResultFileError`."""
        try:
            return _adapter(cls).validate_python(d)
        except ValidationError as exc:
            raise ResultFileError(_problems(exc)) from exc

    @model_serializer(mode="wrap")
    def _held_out_with_its_info(self, write: SerializerFunctionWrapHandler) -> dict[str, Any]:
        d: dict[str, Any] = write(self)
        if self.held_out_info is None:
            d.pop("held_out", None), d.pop("held_out_info", None)
        return d

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


_ADAPTERS: dict[type, TypeAdapter[Any]] = {}


def _adapter(kind: type) -> TypeAdapter[Any]:
    if kind not in _ADAPTERS:  # built on first use: building one takes a few milliseconds
        _ADAPTERS[kind] = TypeAdapter(kind)
    return _ADAPTERS[kind]


def result_adapter() -> TypeAdapter[Result]:
    """The one pydantic adapter that reads and writes ``results.json`` (and gives its schema)."""
    return _adapter(Result)


def as_json(record: Any) -> dict[str, Any]:
    """Any record of a Result (``Settings``, ``Versions``, the Result itself) as its
    ``results.json`` object."""
    out: dict[str, Any] = _adapter(type(record)).dump_python(record, mode="json", by_alias=True)
    return out


_OBJECT_ERRORS = ("dataclass_type", "dataclass_exact_type", "dict_type", "model_type")


def _problems(exc: ValidationError) -> str:
    """The first few problems of a malformed results.json, each named by where it sits
    (``edges[0].verdict``)."""
    out = []
    for error in exc.errors()[:3]:
        loc, kind, value = error["loc"], error["type"], error.get("input")
        parts = [f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc]
        where = "".join(parts).lstrip(".") or "results.json"
        parent, key = "".join(parts[:-1]).lstrip(".") or "results.json", loc[-1] if loc else ""
        shown = repr(value) if isinstance(value, str | int | float | bool) or value is None else type(value).__name__
        if kind == "missing" and isinstance(key, int):
            out.append(f"{parent}: malformed value (too few items: no item [{key}])")
        elif kind == "missing":
            out.append(f"{parent}: missing required field {key!r}")
        elif kind == "literal_error":
            out.append(f"{parent}: {key} must be one of {error['ctx']['expected']}, not {value!r}")
        elif kind in _OBJECT_ERRORS:
            out.append(f"{where}: expected an object, got {type(value).__name__}")
        elif kind in ("list_type", "tuple_type"):
            out.append(f"{where}: expected a list, got {type(value).__name__}")
        else:
            out.append(f"{where}: malformed value {shown} ({error['msg']})")
    more = exc.error_count() - len(out)
    return "; ".join(out) + (f"; and {more} more" if more > 0 else "")
