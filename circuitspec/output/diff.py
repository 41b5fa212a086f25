"""What changed between two verification runs of the same hypothesis.

``circuitspec diff A/results.json B/results.json`` reads two results files (two
checkpoints, two library versions, two sweep cells) and reports, from A to B:

- verdicts that flipped, on every edge (matched by :attr:`EdgeResult.name`) and
  every circuit score, and whether the whole run still passes;
- effects and scores whose bootstrap intervals no longer overlap: the numbers
  moved by more than their uncertainty, even where the verdict held;
- model, task, settings and library versions that differ, which usually explain
  the rest.

A verdict got *worse* when it moved down ``verified > inconclusive > refuted``
(or an edge or claimed score that A verified is missing from B), or when A
passed and B does not; the command then exits 1, so CI can guard a circuit
across checkpoints or refactors the way a test guards code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from circuitspec.errors import CircuitSpecError, ResultFileError
from circuitspec.records.fields import Interval
from circuitspec.results import Result, as_json

__all__ = ["Change", "Diff", "diff_files", "diff_results", "load_result"]

_RANK = {"verified": 2, "inconclusive": 1, "refuted": 0}


@dataclass(frozen=True)
class Change:
    """One thing that differs between run A and run B."""

    kind: str
    """``verdict``, ``interval``, ``passed``, ``missing``, ``added``, ``model``, ``task``,
    ``settings``, ``versions`` or ``hypothesis``."""
    what: str
    """The edge, score or field, e.g. ``edge movers->logits@END`` or ``settings.ablation``."""
    a: Any
    """Its value in A (a verdict, an ``(value, interval)`` pair, a setting)."""
    b: Any
    """Its value in B."""
    worse: bool = False
    """True when a verdict got worse from A to B (what makes ``diff`` exit 1)."""

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "what": self.what, "a": _jsonable(self.a), "b": _jsonable(self.b),
                "worse": self.worse}

    def __str__(self) -> str:
        mark = "WORSE " if self.worse else ""
        if self.kind == "interval":
            return f"{mark}{self.what}: {_num_ci(*self.a)} -> {_num_ci(*self.b)} (intervals do not overlap)"
        return f"{mark}{self.what}: {self.a} -> {self.b}"


@dataclass(frozen=True)
class Diff:
    """Every change from run A to run B, in report order."""

    a: str
    """Where A was read from."""
    b: str
    """Where B was read from."""
    changes: tuple[Change, ...] = field(default_factory=tuple)

    @property
    def worse(self) -> bool:
        """True when any verdict got worse (``circuitspec diff`` exits 1)."""
        return any(c.worse for c in self.changes)

    def to_json(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "worse": self.worse,
                "changes": [c.to_json() for c in self.changes]}

    def lines(self) -> list[str]:
        """The report as text lines: a header, then one line per change."""
        head = f"A: {self.a}\nB: {self.b}"
        if not self.changes:
            return [head, "no differences in verdicts, intervals, settings or versions"]
        order = ("hypothesis", "passed", "verdict", "missing", "added", "interval", "model", "task",
                 "settings", "versions")
        groups = {k: [c for c in self.changes if c.kind == k] for k in order}
        out = [head]
        for kind, items in groups.items():
            if items:
                out.append(f"{kind}:")
                out += [f"  {c}" for c in items]
        out.append("verdict got worse" if self.worse else "no verdict got worse")
        return out


def _jsonable(x: Any) -> Any:
    if isinstance(x, tuple):
        return [_jsonable(v) for v in x]
    return x


def _num_ci(value: float | None, ci: Interval | None) -> str:
    text = "n/a" if value is None else f"{value:+.3f}"
    if ci is not None and ci[0] is not None and ci[1] is not None:
        text += f" [{ci[0]:+.3f}, {ci[1]:+.3f}]"
    return text


def _disjoint(a: Interval | None, b: Interval | None) -> bool:
    if a is None or b is None or None in a or None in b:
        return False
    return a[1] < b[0] or b[1] < a[0]  # type: ignore[operator]


def _verdict_items(r: Result) -> dict[str, tuple[str | None, float | None, Interval | None]]:
    """Every judged thing by name: edges, then circuit scores (verdict, value, interval)."""
    items: dict[str, tuple[str | None, float | None, Interval | None]] = {
        f"edge {e.name}": (e.verdict, e.effect, e.ci) for e in r.edges}
    if r.circuit is not None:
        items |= {f"score {k}": (s.verdict, s.value, s.ci) for k, s in r.circuit.scores().items()}
    return items


def _field_changes(kind: str, a: Mapping[str, Any], b: Mapping[str, Any]) -> list[Change]:
    return [Change(kind, f"{kind}.{k}", a.get(k), b.get(k))
            for k in dict.fromkeys([*a, *b]) if a.get(k) != b.get(k)]


def diff_results(a: Result, b: Result, a_name: str = "A", b_name: str = "B") -> Diff:
    """The changes from result ``a`` to result ``b``."""
    changes: list[Change] = []
    if a.hypothesis.name != b.hypothesis.name:
        changes.append(Change("hypothesis", "hypothesis.name", a.hypothesis.name, b.hypothesis.name))
    if a.passed != b.passed:
        changes.append(Change("passed", "passed", a.passed, b.passed, worse=a.passed and not b.passed))
    items_a, items_b = _verdict_items(a), _verdict_items(b)
    for name, (verdict_a, value_a, ci_a) in items_a.items():
        if name not in items_b:
            changes.append(Change("missing", name, verdict_a, None, worse=verdict_a == "verified"))
            continue
        verdict_b, value_b, ci_b = items_b[name]
        if verdict_a != verdict_b:
            worse = verdict_a is not None and _RANK.get(verdict_b or "", -1) < _RANK[verdict_a]
            changes.append(Change("verdict", name, verdict_a, verdict_b, worse=worse))
        if _disjoint(ci_a, ci_b):
            changes.append(Change("interval", name, (value_a, ci_a), (value_b, ci_b)))
    changes += [Change("added", name, None, v[0]) for name, v in items_b.items() if name not in items_a]
    model_keys = ("reference", "name", "revision", "n_layers", "n_heads", "n_kv_heads")
    changes += _field_changes("model", {k: getattr(a.model, k) for k in model_keys},
                              {k: getattr(b.model, k) for k in model_keys})
    task_keys = ("kind", "n_prompts", "seed", "corruption", "prepend_bos")
    changes += _field_changes("task", {k: getattr(a.task, k) for k in task_keys},
                              {k: getattr(b.task, k) for k in task_keys})
    changes += _field_changes("settings", as_json(a.settings), as_json(b.settings))
    changes += _field_changes("versions", as_json(a.versions), as_json(b.versions))
    return Diff(a_name, b_name, tuple(changes))


def load_result(path: str | Path) -> Result:
    """Read a results.json for diffing; every problem is a CircuitSpecError naming the file."""
    path = Path(path)
    if path.is_dir() and (path / "results.json").is_file():
        path = path / "results.json"  # a verify --out folder or a sweep cell folder
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CircuitSpecError(f"{path}: cannot read file ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise CircuitSpecError(f"{path}: not a text file; expected a results.json") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CircuitSpecError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict) or "hypothesis" not in data or "edges" not in data:
        raise CircuitSpecError(
            f"{path}: not a circuitspec results.json (no 'hypothesis' and 'edges'); "
            "give the results.json written by `circuitspec verify --out DIR` or a sweep cell")
    try:
        return Result.from_json(data)
    except ResultFileError as exc:
        raise CircuitSpecError(f"{path}: {exc}") from None


def diff_files(a: str | Path, b: str | Path) -> Diff:
    """Load two results files and diff them."""
    return diff_results(load_result(a), load_result(b), str(a), str(b))
