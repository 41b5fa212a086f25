"""Running a sweep's cells on Ray: a local Ray started in-process, or an existing cluster.

Cells are grouped by the model they load (:class:`~circuitspec.sweep.grid.ModelKey`);
each group gets ``workers_per_model`` Ray actors (:class:`~circuitspec.sweep.worker.ModelWorker`),
each asking for ``num_cpus`` CPUs and, for a cuda cell, a GPU. An actor is sent one
cell at a time, so the driver always knows which cells are running, loads its model
on the first cell and keeps it for the rest, and is killed when its queue is empty,
freeing its CPUs (and GPU) for a model still waiting to be placed.

Cells recorded on disk with the same key are not run again (failures of kind
``input`` neither, unless ``retry_failed``); a cell whose actor dies (out of
memory) is recorded as a ``runtime`` failure, its actor replaced for the cells
left, and the rest of the sweep carries on. Ctrl-C stops the workers; what
finished stays recorded, and the same command resumes.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from circuitspec.bridge.loading import resolve_kind
from circuitspec.errors import CircuitSpecError
from circuitspec.spec.schema import Hypothesis
from circuitspec.sweep.grid import Cell, ModelKey, expand
from circuitspec.sweep.spec import LoadedSweep
from circuitspec.sweep.store import CellState, counts, recorded, write_outcome, write_tables
from circuitspec.sweep.worker import CellOutcome, ModelWorker

__all__ = ["SweepRun", "run_sweep"]

Log = Callable[[str], None]
MAX_RESTARTS = 2  # actor deaths per worker slot before its remaining cells are failed


@dataclass
class SweepRun:
    """What a sweep run did."""

    states: list[CellState]
    ran: int = 0
    """Cells run this time (the rest were found on disk)."""
    wall_s: float = 0.0

    @property
    def counts(self) -> dict[str, int]:
        return counts(self.states)


@dataclass
class _Slot:
    """One worker (Ray actor) and the cells queued for it."""

    model: ModelKey
    queue: list[Cell]
    actor: Any = None
    ready: bool = False
    current: Cell | None = None
    restarts: int = 0
    deaths: list[str] = field(default_factory=list)


def _init_ray(address: str | None, temp_dir: Path | None) -> bool:
    """Connect to ``address`` or start a small local Ray; True when we started (and must stop) it."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError:
        raise CircuitSpecError("circuitspec sweep runs its cells on Ray, which is not installed: "
                               "pip install 'circuitspec[sweep]' (or ray==2.60.0)") from None

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                              "logging_level": logging.ERROR, "configure_logging": True}
    if address is not None:
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise CircuitSpecError(f"--address {address}: cannot connect to a Ray cluster ({exc})") from None
        return True
    # A local single-machine Ray: every core, no dashboard, a small object store (results are
    # text), and workers at the driver's priority (Ray renices them to 15 by default, which
    # on a busy machine makes a sweep far slower than the same verify runs by hand).
    os.environ.setdefault("RAY_worker_niceness", "0")
    if temp_dir is not None:
        kwargs["_temp_dir"] = str(temp_dir)
    ray.init(num_cpus=os.cpu_count() or 1, object_store_memory=100 * 1024**2, **kwargs)
    return True


def _reachable(address: str) -> None:
    """Fail fast on a cluster address nothing answers at (ray.init would retry for minutes)."""
    hostport = address.split("://", 1)[-1]
    if hostport == "auto" or ":" not in hostport:
        return
    host, _, port = hostport.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    except (OSError, ValueError) as exc:
        raise CircuitSpecError(f"--address {address}: no Ray cluster answers there ({exc}); start one "
                               "with `ray start --head`, or leave --address out to run on a local Ray") from None


def _actor_options(model: ModelKey, sweep: LoadedSweep) -> dict[str, Any]:
    res = sweep.spec.resources
    gpus = res.gpus_per_cuda_cell if model.device.startswith("cuda") else 0
    if model.n_devices and model.n_devices > 1:
        gpus = model.n_devices  # a model split over n GPUs holds all n
    return {"num_cpus": res.num_cpus, "num_gpus": gpus, "max_concurrency": 1}


def _slots(cells: list[Cell], sweep: LoadedSweep) -> list[_Slot]:
    by_model: dict[ModelKey, list[Cell]] = {}
    for cell in cells:
        by_model.setdefault(cell.model, []).append(cell)
    k = sweep.spec.resources.workers_per_model
    out = []
    for model, group in by_model.items():
        for i in range(min(k, len(group))):
            out.append(_Slot(model, group[i::k]))
    return out


def _status_line(states: dict[str, CellState], started: float) -> str:
    c = counts(list(states.values()))
    return (f"{c['done'] + c['failed']}/{len(states)} finished: {c['done']} done ({c['passed']} passed), "
            f"{c['running']} running, {c['failed']} failed, {c['pending']} pending "
            f"[{time.perf_counter() - started:.0f} s]")


def run_sweep(
    sweep: LoadedSweep,
    out: Path,
    *,
    address: str | None = None,
    retry_failed: bool = False,
    log: Log | None = None,
) -> SweepRun:
    """Run every cell not already recorded under ``out``; write cells, sweep.json and sweep.csv.

    ``log`` gets one line per change: a cell started, finished or failed, with the counts.
    """
    say = log or (lambda line: print(line, file=sys.stderr))
    if address is not None:
        _reachable(address)  # a bad --address is bad input: say so before anything is written
    started = time.perf_counter()
    cells = expand(sweep)
    hyps: dict[str, Hypothesis] = {str(p): h for p, h in sweep.hypotheses}
    states: dict[str, CellState] = {}
    todo: list[Cell] = []
    for cell in cells:
        found = recorded(out, cell)
        if found is not None and not (found.status == "failed" and (retry_failed or found.error_kind != "input")):
            states[cell.id] = found
        else:
            states[cell.id] = CellState(cell, "pending")
            todo.append(cell)
    out.mkdir(parents=True, exist_ok=True)
    source = str(sweep.path)
    reused = len(cells) - len(todo)
    say(f"sweep {sweep.spec.name}: {len(cells)} cells, {reused} already recorded, {len(todo)} to run")

    def tables() -> list[CellState]:  # running cells count as pending until they finish
        ordered = [states[c.id] if states[c.id].status != "running" else CellState(c, "pending")
                   for c in cells]
        write_tables(out, sweep.spec.name, source, ordered)
        return ordered

    def update(state: CellState, line: str | None = None) -> None:
        states[state.cell.id] = state
        if line:
            say(f"{line} | {_status_line(states, started)}")
        if state.status in ("done", "failed"):
            tables()  # sweep.json/csv follow the sweep, so a long one can be watched (and killed)

    attempted = len(todo)
    try:
        for cell in list(todo):  # what cannot run fails here, without starting Ray or a worker
            problem = _cannot_run(cell, sweep, address)
            if problem is not None:
                message, kind = problem
                todo.remove(cell)
                state = write_outcome(out, cell, CellOutcome(cell.id, False, error=message, error_kind=kind))
                update(state, f"{cell.id}: FAILED ({message})")
        if todo:
            _run_on_ray(sweep, out, todo, hyps, address, update)
    finally:  # interrupted too: the tables show what finished
        ordered = tables()
    return SweepRun(ordered, ran=attempted, wall_s=time.perf_counter() - started)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _local_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _cannot_run(cell: Cell, sweep: LoadedSweep, address: str | None) -> tuple[str, str] | None:
    """(message, kind) when a cell is bound to fail: a missing folder, a GPU this machine lacks."""
    try:
        resolve_kind(cell.model.ref)
    except CircuitSpecError as exc:
        return " ".join(str(exc).split()), "input"
    need = _actor_options(cell.model, sweep)["num_gpus"]
    if address is None and need > 0 and need > _local_gpus():
        return (f"device {cell.model.device} needs {need:g} GPU(s) and this machine has {_local_gpus()}; "
                "run it where there are (or on a Ray cluster with --address)"), "runtime"
    return None


def _run_on_ray(sweep: LoadedSweep, out: Path, todo: list[Cell], hyps: dict[str, Hypothesis],
                address: str | None, update: Callable[..., None]) -> None:
    own = _init_ray(address, None)
    import ray
    from ray.exceptions import RayActorError, WorkerCrashedError

    # ray.init makes SIGTERM exit at once; a kill should stop the workers and keep what
    # finished, as Ctrl-C does.
    on_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if on_main else None

    remote_worker = ray.remote(ModelWorker)
    slots = _slots(todo, sweep)
    pending: dict[Any, tuple[str, _Slot]] = {}

    def finish(slot: _Slot, cell: Cell, outcome: CellOutcome) -> None:
        state = write_outcome(out, cell, outcome)
        what = "done, passed" if state.result is not None and state.result.passed else (
            "done, failed a claim" if state.status == "done" else f"FAILED ({outcome.error})")
        update(state, f"{cell.id}: {what} in {outcome.wall_s:.1f} s")

    def fail_rest(slot: _Slot, message: str, kind: str = "runtime") -> None:
        for cell in ([slot.current] if slot.current else []) + slot.queue:
            finish(slot, cell, CellOutcome(cell.id, False, error=message, error_kind=kind))
        slot.queue, slot.current = [], None

    def start(slot: _Slot) -> None:
        opts = _actor_options(slot.model, sweep)
        slot.actor = remote_worker.options(**opts).remote(slot.model, max(1, int(opts["num_cpus"])))
        slot.ready = False
        pending[slot.actor.ready.remote()] = ("ready", slot)

    def next_cell(slot: _Slot) -> None:
        if not slot.queue:
            slot.current = None
            ray.kill(slot.actor)
            return
        slot.current = slot.queue.pop(0)
        cell = slot.current
        pending[slot.actor.run.remote(cell, hyps[cell.hypothesis_path])] = ("run", slot)
        update(CellState(cell, "running"), f"{cell.id}: running")

    gpus = float(ray.cluster_resources().get("GPU", 0))
    try:
        for slot in slots:
            need = _actor_options(slot.model, sweep)["num_gpus"]
            if need > gpus:
                fail_rest(slot, f"device {slot.model.device} needs a GPU, and the Ray cluster has "
                                f"{gpus:g}; run on a machine or cluster with one (--address)")
                continue
            start(slot)
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                kind, slot = pending.pop(ref)
                try:
                    value = ray.get(ref)
                except (RayActorError, WorkerCrashedError) as exc:
                    _actor_died(slot, kind, exc, finish, fail_rest, start)
                    continue
                if kind == "ready":
                    slot.ready = True
                    next_cell(slot)
                else:
                    cell = slot.current
                    assert cell is not None  # a run future always has its cell
                    finish(slot, cell, value)
                    next_cell(slot)
    finally:
        for slot in slots:
            if slot.actor is not None:
                ray.kill(slot.actor)
        if own:
            ray.shutdown()
        if on_main:
            signal.signal(signal.SIGTERM, previous)


def _actor_died(slot: _Slot, kind: str, exc: BaseException, finish: Callable[..., None],
                fail_rest: Callable[..., None], start: Callable[[_Slot], None]) -> None:
    """Record the cell a dead actor was running (out of memory, killed) and start a new one."""
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    message = f"the worker died ({type(exc).__name__}: {reason}); out of memory?"
    if kind == "run" and slot.current is not None:
        cell, slot.current = slot.current, None
        finish(slot, cell, CellOutcome(cell.id, False, error=message, error_kind="runtime"))
    slot.restarts += 1
    if slot.restarts > MAX_RESTARTS:
        fail_rest(slot, f"{message}; gave up after {MAX_RESTARTS} restarts")
    elif slot.queue:
        start(slot)
