"""Terminal output: the one progress bar (verify's stages, an analysis's steps) and the verdict table."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from circuitspec.output.report import post_selection, score_label

if TYPE_CHECKING:
    from rich.console import Console

    from circuitspec.results import Result

STYLE = {"verified": "green", "refuted": "red", "inconclusive": "yellow", None: "dim"}


def stdout_console() -> Console:
    """A rich console for stdout; outside a terminal (a pipe, a CI log) it is wide enough
    that no table cell is cut or wrapped, so identifiers can be copied whole."""
    from rich.console import Console

    if sys.stdout.isatty():
        return Console()
    return Console(width=10_000, soft_wrap=True)


def stage_lines(stream: TextIO) -> Callable[[str, int, int], None]:
    """A progress callback for logs: one line per stage with the time since the start."""
    start = time.perf_counter()
    last: list[str] = []

    def update(what: str, done: int, total: int) -> None:
        if last and last[0] == what:
            return
        last[:] = [what]
        count = f" ({done + 1}/{total})" if total > 1 and done < total else ""
        stream.write(f"[{time.perf_counter() - start:7.1f}s] {what}{count}\n")
        stream.flush()

    return update


def timed_log(stream: TextIO | None = None) -> Callable[[str], None]:
    """A ``log(line)`` callback that prefixes each line with the time since the start."""
    start = time.perf_counter()

    def log(line: str) -> None:
        out = stream or sys.stderr
        out.write(f"[{time.perf_counter() - start:7.1f}s] {line}\n")
        out.flush()

    return log


def _rich_bar(*counts: Any) -> Any:
    """The one rich progress bar of the package, on stderr, gone when done."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), *counts, TimeElapsedColumn(),
                    console=Console(stderr=True), transient=True)


@contextmanager
def progress_bar(quiet: bool = False) -> Iterator[Callable[[str, int, int], None]]:
    """A progress bar fed by ``(what, done, total)`` calls (the stages of ``verify``); outside
    a terminal, one line per stage with its elapsed time instead."""
    if quiet:
        yield lambda what, done, total: None
        return
    if not sys.stderr.isatty():
        yield stage_lines(sys.stderr)
        return
    from rich.progress import TextColumn

    with _rich_bar(TextColumn("{task.completed}/{task.total}")) as bar:
        task = bar.add_task("loading", total=1)

        def update(what: str, done: int, total: int) -> None:
            bar.update(task, description=what, completed=done, total=max(total, 1))

        yield update


class counted_bar:  # noqa: N801 - used like a function in a with statement
    """The same bar counting ``total`` steps of one task (``advance``), with the time left;
    nothing when ``enabled`` is False."""

    def __init__(self, description: str, total: int, enabled: bool = True):
        self.description, self.total, self.enabled = description, total, enabled
        self._bar: Any = None

    def __enter__(self) -> counted_bar:
        if self.enabled:
            from rich.progress import MofNCompleteColumn, TimeRemainingColumn

            self._bar = _rich_bar(MofNCompleteColumn(), TimeRemainingColumn())
            self._bar.__enter__()
            self._task = self._bar.add_task(self.description, total=self.total)
        return self

    def advance(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, n)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)


def _ci(ci: tuple[float | None, float | None] | None) -> str:
    if not ci or ci[0] is None or ci[1] is None:
        return ""
    return f"[{ci[0]:+.3f}, {ci[1]:+.3f}]"


def print_result(result: Result, out: Path | None = None) -> None:
    """The verdict table a person reads at a glance."""
    from rich.table import Table

    console = stdout_console()
    m = result.metric
    console.print(
        f"[bold]{result.hypothesis.name}[/bold] on {result.model.reference}: "
        f"{result.task.n_prompts} prompts, logit diff clean {m.clean:.3f}, corrupted {m.corrupt:.3f} "
        f"({result.settings.semantics} semantics, {result.settings.engine} engine)"
    )
    if result.held_out_info is not None:
        label = {True: "[green]held out[/green]", False: "[red]in-sample[/red]",
                 None: "[dim]held out: unknown[/dim]"}[result.held_out]
        console.print(f"{label}: {result.held_out_info.get('reason', '')}")
    edges = Table(title="edges (effect = (M_patched - M_clean) / (M_clean - M_corrupt))")
    for col in ("edge", "effect", f"{100 * float((result.settings.statistics or {}).get('level', 0.95)):g}% CI", "null", "verdict"):
        edges.add_column(col)
    for e in result.edges:
        null = _ci((e.null.low, e.null.high)) if e.null else ""
        style = STYLE.get(e.verdict, "")
        edges.add_row(e.name, f"{e.effect:+.3f}", _ci(e.ci), null, f"[{style}]{e.verdict}[/{style}]")
    console.print(edges)
    if result.circuit is not None:
        scores = Table(title="circuit")
        for col in ("score", "value", f"{100 * float((result.settings.statistics or {}).get('level', 0.95)):g}% CI", "verdict"):
            scores.add_column(col)
        for name, s in result.circuit.scores().items():
            word: str = s.verdict or "reported"
            style = STYLE.get(s.verdict, "dim")
            value = "" if s.value is None else f"{s.value:.3f}{post_selection(s)}"
            source = s.details.get("claim")
            if source in ("claimed", "default", "off"):
                word = f"{s.verdict or 'off'} ({source})"
            scores.add_row(score_label(name), value, _ci(s.ci), f"[{style}]{word}[/{style}]")
        console.print(scores)
    failures = result.failures()
    for failure in failures:
        console.print(f"[red]✗[/red] {failure}")
    if result.mode == "quick":
        fewer = (result.settings.statistics or {}).get("quick_prompts")
        console.print("[bold yellow]QUICK CHECK ONLY[/bold yellow]: edges and faithfulness with small "
                      + ("nulls" if fewer is None else f"nulls on {fewer} (--n-prompts for more)")
                      + ", not the full verification; run verify without --quick to pass a file.")
    else:
        console.print("[bold green]PASSED[/bold green]" if result.passed else "[bold red]FAILED[/bold red]")
    if out is not None:
        console.print(f"outputs in {out}/ (results.json, circuit.svg, circuit.png, report.md, report.html)")
