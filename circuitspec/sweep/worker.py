"""The worker side of a sweep: one process that loads one model once and verifies cells on it.

:class:`ModelWorker` is a plain class; the runner turns it into a Ray actor
(``ray.remote(ModelWorker)``), one per model (or ``workers_per_model`` per
model), so every cell that shares a model reuses the loaded weights instead of
paying the load again. A cell's outcome comes back as plain data: the
``results.json`` text, or the error with its kind, ``input`` (the user's to fix:
a bad model reference, a head the model does not have; not retried on resume)
or ``runtime`` (out of memory, a crash; retried on resume).
"""

from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass, replace
from typing import Any

from circuitspec.bridge.loading import load_model
from circuitspec.errors import CircuitSpecError
from circuitspec.spec.schema import Hypothesis
from circuitspec.sweep.grid import Cell, ModelKey
from circuitspec.verification.run import verify

__all__ = ["CellOutcome", "ModelWorker", "run_cell"]


@dataclass(frozen=True)
class CellOutcome:
    """What one cell produced, sent back to the driver."""

    cell_id: str
    ok: bool
    results_json: str | None = None
    """The cell's ``results.json`` text when it ran."""
    passed: bool | None = None
    error: str | None = None
    """One-line error message when it failed."""
    error_kind: str | None = None
    """``input`` (not retried on resume) or ``runtime`` (retried)."""
    detail: str | None = None
    """The traceback, for the cell's ``error.json``."""
    wall_s: float = 0.0
    model_load_s: float = 0.0
    """Seconds spent loading the model for this cell (0 when the worker had it loaded)."""
    worker: str = ""
    """host:pid of the worker that ran it."""


def _error_kind(exc: BaseException) -> str:
    return "input" if isinstance(exc, CircuitSpecError) else "runtime"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}" if not isinstance(exc, CircuitSpecError) \
        else " ".join(line.strip() for line in text)


class ModelWorker:
    """Loads ``model`` on first use and verifies cells on it."""

    def __init__(self, model: ModelKey, num_threads: int = 1):
        self.model_key = model
        self.num_threads = max(1, int(num_threads))
        self.loaded: Any = None
        self.load_error: BaseException | None = None
        self.loads = 0

    def ready(self) -> str:
        """Called once the actor is placed: sets torch's threads, answers host:pid."""
        import torch

        torch.set_num_threads(self.num_threads)
        return f"{os.uname().nodename}:{os.getpid()}"

    def _load(self) -> tuple[Any, float]:
        if self.loaded is not None:
            return self.loaded, 0.0
        if self.load_error is not None:  # a bad reference fails every cell, but is loaded once
            raise self.load_error
        start = time.perf_counter()
        m = self.model_key
        try:
            self.loaded = load_model(m.ref, **m.load_kwargs())
        except Exception as exc:
            self.load_error = exc
            raise
        self.loads += 1
        return self.loaded, time.perf_counter() - start

    def run(self, cell: Cell, hypothesis: Hypothesis) -> CellOutcome:
        return run_cell(self, cell, hypothesis)


def run_cell(worker: ModelWorker, cell: Cell, hypothesis: Hypothesis) -> CellOutcome:
    """Verify one cell on the worker's model; never raises for the cell's own failures."""
    start = time.perf_counter()
    where = f"{os.uname().nodename}:{os.getpid()}"
    load_s = 0.0
    try:
        model, load_s = worker._load()
        result = verify(cell.hypothesis(hypothesis), model=model, options=cell.options())
        timings = dict(result.timings)
        if load_s:
            timings["load_model"] = round(load_s, 3)
        result = replace(result, timings=timings)
        return CellOutcome(cell.id, True, result.dumps(), result.passed, wall_s=time.perf_counter() - start,
                           model_load_s=load_s, worker=where)
    except Exception as exc:  # noqa: BLE001 - a failing cell is reported, and must not stop the sweep
        return CellOutcome(cell.id, False, error=_one_line(exc), error_kind=_error_kind(exc),
                           detail=traceback.format_exc(), wall_s=time.perf_counter() - start,
                           model_load_s=load_s, worker=where)
