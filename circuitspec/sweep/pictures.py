"""The sweep's pictures: each score with its interval against each varied axis, and the verdicts.

``scores_by_<axis>.png``: one panel per judged quantity (every edge effect, every
circuit score), the quantity with its bootstrap interval at each value of the
axis, one series per combination of the other varied axes (e.g. faithfulness
against checkpoint, one line per seed).

``verdicts.png``: cells (rows) by claims (columns), coloured by verdict, with a
column for ``passed``; a failed cell's row says ``error``.

Pure rendering: states in, PNG files out (matplotlib's Agg backend, imported lazily).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from circuitspec.output.plots import _plt, _save
from circuitspec.sweep.grid import AXES
from circuitspec.sweep.store import CellState, judged

__all__ = ["VERDICT_COLOURS", "draw", "varied_axes"]

VERDICT_COLOURS = {"verified": "#2e7d32", "refuted": "#c62828", "inconclusive": "#f9a825",
                   None: "#d0d0d0", "error": "#555555", "pending": "#ffffff"}
MAX_PANELS = 16


def varied_axes(states: list[CellState]) -> list[str]:
    """The row axes (hypothesis, model, settings) that take more than one value; an axis that
    moves in lockstep with an earlier one (each hypothesis on its own model) is left out."""
    names = ["hypothesis", "model", *AXES]
    rows = [{n: str(s.cell.row_axes()[n]) for n in names} for s in states]
    varied: list[str] = []
    for n in names:
        if len({r[n] for r in rows}) < 2:
            continue
        if not any(_lockstep(rows, m, n) for m in varied):
            varied.append(n)
    return varied


def _lockstep(rows: list[dict[str, str]], a: str, b: str) -> bool:
    """True when the values of ``a`` and ``b`` pair one to one across the rows."""
    return len({(r[a], r[b]) for r in rows}) == len({r[a] for r in rows}) == len({r[b] for r in rows})


def _quantities(states: list[CellState]) -> list[str]:
    names: dict[str, None] = {}
    for s in states:
        if s.result is not None:
            names |= dict.fromkeys(k for k, (v, _, _) in judged(s.result).items() if v is not None)
    scores = [n for n in names if not n.startswith("edge ")]
    return (scores + [n for n in names if n.startswith("edge ")])[:MAX_PANELS]


def scores_by_axis(states: list[CellState], axis: str, others: list[str], path: Path) -> Path:
    """One panel per quantity: value and interval against ``axis``, a series per other combination."""
    plt = _plt()
    quantities = _quantities(states)
    xs = list(dict.fromkeys(str(s.cell.row_axes()[axis]) for s in states))
    series = list(dict.fromkeys(_label(s, others) for s in states))
    cols = min(3, max(1, len(quantities)))
    rows = max(1, -(-len(quantities) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    width = 0.6 / max(1, len(series))
    for ax, name in zip(axes.flat, quantities, strict=False):
        for j, label in enumerate(series):
            pts = []
            for s in states:
                if s.result is None or _label(s, others) != label:
                    continue
                value, ci, verdict = judged(s.result).get(name, (None, None, None))
                if value is None:
                    continue
                x = xs.index(str(s.cell.row_axes()[axis])) + (j - (len(series) - 1) / 2) * width
                low, high = (ci if ci is not None and None not in ci else (value, value))
                pts.append((x, value, value - low, high - value, verdict))
            if not pts:
                continue
            pts.sort()
            x, y, lo, hi, verdicts = zip(*pts, strict=True)
            ax.errorbar(x, y, yerr=[lo, hi], marker="o", ms=4, capsize=3, lw=1, label=label or None)
            for xi, yi, v in zip(x, y, verdicts, strict=True):
                ax.plot([xi], [yi], "o", ms=7, mfc="none", mec=VERDICT_COLOURS.get(v, "#d0d0d0"), mew=1.5)
        ax.set_title(name, fontsize=9)
        ax.set_xticks(range(len(xs)))
        ax.set_xticklabels(xs, rotation=30 if max(map(len, xs)) > 8 else 0, ha="right" if
                           max(map(len, xs)) > 8 else "center", fontsize=8)
        ax.set_xlabel(axis, fontsize=8)
        ax.grid(alpha=0.3)
        if len(series) > 1 and name == quantities[0]:
            ax.legend(fontsize=7, title=", ".join(others), title_fontsize=7)
    for ax in list(axes.flat)[len(quantities):]:
        ax.axis("off")
    fig.suptitle(f"scores with bootstrap intervals against {axis} (ring: verdict colour)", fontsize=10)
    return _save(fig, path)


def _label(state: CellState, axes: list[str]) -> str:
    a = state.cell.row_axes()
    return ", ".join(f"{k}={a[k]}" for k in axes)


def verdict_grid(states: list[CellState], path: Path, label_axes: list[str]) -> Path:
    """Cells x claims, coloured by verdict; a failed cell is a dark row marked ``error``."""
    plt = _plt()
    from matplotlib.colors import to_rgb

    claims: dict[str, None] = {}
    for s in states:
        if s.result is not None:
            claims |= dict.fromkeys(k for k, (_, _, v) in judged(s.result).items() if v is not None)
    columns = [*claims, "passed"]
    grid: list[list[Any]] = []
    marks: list[list[str]] = []
    for s in states:
        if s.result is None:
            key = "error" if s.status == "failed" else "pending"
            grid.append([to_rgb(VERDICT_COLOURS[key])] * len(columns))
            marks.append([key if i == 0 else "" for i in range(len(columns))])
            continue
        j = judged(s.result)
        verdicts = [j.get(c, (None, None, None))[2] for c in claims]
        verdicts.append("verified" if s.result.passed else "refuted")
        grid.append([to_rgb(VERDICT_COLOURS.get(v, "#d0d0d0")) for v in verdicts])
        marks.append([(v or "")[:3] for v in verdicts[:-1]] + ["yes" if s.result.passed else "no"])
    fig, ax = plt.subplots(figsize=(max(5.0, 3.2 + 0.9 * len(columns)), 1.6 + 0.32 * len(states)))
    ax.imshow(grid, aspect="auto")
    for i, row in enumerate(marks):
        for k, text in enumerate(row):
            colour = "white" if grid[i][k] != to_rgb("#ffffff") and text else "black"
            ax.text(k, i, text, ha="center", va="center", fontsize=7, color=colour)
    ax.set_xticks(range(len(columns)))
    ax.set_xticklabels(columns, rotation=35, ha="right", fontsize=7)
    ax.set_yticks(range(len(states)))
    ax.set_yticklabels([_label(s, label_axes) or s.cell.id for s in states], fontsize=7)
    ax.set_title("verdicts: green verified, red refuted,\nyellow inconclusive, grey unclaimed", fontsize=8)
    return _save(fig, path)


def draw(states: list[CellState], out: Path) -> list[Path]:
    """Every picture of the sweep into ``out``; returns the paths written."""
    varied = varied_axes(states)
    written = []
    if any(s.result is not None for s in states):
        for axis in varied or ["model"]:
            others = [a for a in varied if a != axis]
            written.append(scores_by_axis(states, axis, others, out / f"scores_by_{axis}.png"))
    written.append(verdict_grid(states, out / "verdicts.png", varied or ["model"]))
    return written
