"""The sweep's folder: one folder per cell, and the tables over all of them.

``DIR/cells/<cell-id>/`` holds ``cell.json`` (the cell's inputs and key, how long it
ran, where) and either ``results.json`` (the cell ran; byte for byte what
``circuitspec verify`` writes) or ``error.json`` (it failed: message, kind,
traceback). Every file is written atomically, ``cell.json`` first, so a cell
counts as finished only when its outcome file sits beside a ``cell.json`` whose
key matches the cell's: a sweep killed at any moment resumes cleanly.

``DIR/sweep.json`` and ``DIR/sweep.csv`` hold one row per cell: its axes, every
edge effect and circuit score with interval and verdict, ``passed``, and the
error of a failed cell.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from circuitspec import __version__
from circuitspec.errors import CircuitSpecError
from circuitspec.output.atomic import atomic_write_text
from circuitspec.results import Result
from circuitspec.sweep.grid import Cell
from circuitspec.sweep.worker import CellOutcome

__all__ = ["CellState", "SWEEP_SCHEMA_VERSION", "recorded", "rows", "write_outcome", "write_tables"]

SWEEP_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class CellState:
    """Where one cell stands."""

    cell: Cell
    status: str
    """``done``, ``failed``, ``running`` or ``pending``."""
    result: Result | None = None
    error: str | None = None
    error_kind: str | None = None
    reused: bool = False
    """True when the outcome was found on disk (nothing was run for it this time)."""
    wall_s: float | None = None


def cell_dir(out: Path, cell: Cell) -> Path:
    return out / "cells" / cell.id


def recorded(out: Path, cell: Cell) -> CellState | None:
    """The finished outcome on disk for exactly this cell's inputs, or None."""
    folder = cell_dir(out, cell)
    try:
        meta = json.loads((folder / "cell.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("key") != cell.key:
        return None
    wall = meta.get("wall_s")
    if (folder / "results.json").is_file():
        try:
            return CellState(cell, "done", Result.load(folder / "results.json"), reused=True, wall_s=wall)
        except (CircuitSpecError, OSError):  # an unreadable result is simply run again
            return None
    try:
        err = json.loads((folder / "error.json").read_text(encoding="utf-8"))
        return CellState(cell, "failed", error=err["error"], error_kind=err["kind"], reused=True, wall_s=wall)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_outcome(out: Path, cell: Cell, outcome: CellOutcome) -> CellState:
    """Record a cell's outcome (atomically) and return its state."""
    folder = cell_dir(out, cell)
    meta = {"id": cell.id, "key": cell.key, "inputs": cell.inputs, "wall_s": round(outcome.wall_s, 3),
            "model_load_s": round(outcome.model_load_s, 3), "worker": outcome.worker}
    atomic_write_text(folder / "cell.json", json.dumps(meta, indent=2, default=str) + "\n")
    if outcome.ok and outcome.results_json is not None:
        atomic_write_text(folder / "results.json", outcome.results_json)
        (folder / "error.json").unlink(missing_ok=True)
        result = Result.from_json(json.loads(outcome.results_json))
        return CellState(cell, "done", result, wall_s=outcome.wall_s)
    err = {"error": outcome.error, "kind": outcome.error_kind, "traceback": outcome.detail}
    atomic_write_text(folder / "error.json", json.dumps(err, indent=2) + "\n")
    (folder / "results.json").unlink(missing_ok=True)
    return CellState(cell, "failed", error=outcome.error, error_kind=outcome.error_kind,
                     wall_s=outcome.wall_s)


def _iv(ci: Any) -> tuple[Any, Any]:
    return (None, None) if ci is None else (ci[0], ci[1])


def judged(result: Result) -> dict[str, tuple[float | None, Any, str | None]]:
    """Every judged quantity of a result: ``edge NAME`` and circuit scores, (value, ci, verdict)."""
    out: dict[str, tuple[float | None, Any, str | None]] = {
        f"edge {e.name}": (e.effect, e.ci, e.verdict) for e in result.edges}
    if result.circuit is not None:
        out |= {k: (s.value, s.ci, s.verdict) for k, s in result.circuit.scores().items()}
    return out


def row(state: CellState) -> dict[str, Any]:
    """One flat row: id, status, axes, passed, then value/low/high/verdict per judged quantity."""
    cell = state.cell
    out: dict[str, Any] = {"cell": cell.id, "status": state.status, **cell.row_axes(),
                           "passed": None, "error": state.error, "error_kind": state.error_kind,
                           "reused": state.reused, "wall_s": None if state.wall_s is None else round(state.wall_s, 3)}
    r = state.result
    if r is None:
        return out
    out["passed"] = r.passed
    out["metric_clean"], out["metric_corrupt"] = r.metric.clean, r.metric.corrupt
    for name, (value, ci, verdict) in judged(r).items():
        low, high = _iv(ci)
        out |= {name: value, f"{name} low": low, f"{name} high": high, f"{name} verdict": verdict}
    return out


def rows(states: list[CellState]) -> list[dict[str, Any]]:
    return [row(s) for s in states]


def counts(states: list[CellState]) -> dict[str, int]:
    out = {k: 0 for k in ("done", "failed", "running", "pending")}
    for s in states:
        out[s.status] += 1
    out["passed"] = sum(1 for s in states if s.result is not None and s.result.passed)
    out["reused"] = sum(1 for s in states if s.reused)
    return out


def _cell_json(state: CellState) -> dict[str, Any]:
    r = state.result
    return {
        "id": state.cell.id, "key": state.cell.key, "status": state.status, "reused": state.reused,
        "axes": state.cell.row_axes(), "passed": None if r is None else r.passed,
        "error": None if state.error is None else {"message": state.error, "kind": state.error_kind},
        "results": f"cells/{state.cell.id}/results.json" if r is not None else None,
        "judged": {} if r is None else {k: {"value": v, "ci": None if ci is None else list(ci), "verdict": w}
                                        for k, (v, ci, w) in judged(r).items()},
        "wall_s": state.wall_s,
    }


def write_tables(out: Path, name: str, source: str, states: list[CellState]) -> None:
    """``sweep.json`` and ``sweep.csv`` (atomically), in cell order."""
    doc = {"schema_version": SWEEP_SCHEMA_VERSION, "name": name, "sweep_file": source,
           "circuitspec": __version__, "counts": counts(states), "cells": [_cell_json(s) for s in states]}
    atomic_write_text(out / "sweep.json", json.dumps(doc, indent=2, allow_nan=False, default=str) + "\n")
    table = rows(states)
    columns = list(dict.fromkeys(k for r in table for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for r in table:
        writer.writerow({k: "" if r.get(k) is None else r[k] for k in columns})
    atomic_write_text(out / "sweep.csv", buf.getvalue())
