"""The sweep report: ``sweep.md`` and a self-contained ``sweep.html`` around the pictures.

Both show the counts, the verdict grid, the scores against each varied axis and a
table with one row per cell (axes, passed, every circuit score with its
interval and verdict, the error of a failed cell). The HTML embeds the PNGs as
data URIs, so the one file can be mailed or attached to a CI run.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from circuitspec.output.atomic import staged_dir
from circuitspec.sweep.pictures import draw, varied_axes
from circuitspec.sweep.store import CellState, counts, judged

__all__ = ["write_report"]


def _fmt(value: Any, ci: Any) -> str:
    if value is None:
        return ""
    text = f"{value:+.3f}"
    if ci is not None and None not in ci:
        text += f" [{ci[0]:+.3f}, {ci[1]:+.3f}]"
    return text


def _table(states: list[CellState]) -> tuple[list[str], list[list[str]]]:
    axes = varied_axes(states) or ["hypothesis", "model"]
    quantities: dict[str, None] = {}
    for s in states:
        if s.result is not None:
            quantities |= dict.fromkeys(judged(s.result))
    head = ["cell", *axes, "passed", *quantities]
    body = []
    for s in states:
        a = s.cell.row_axes()
        row = [s.cell.id, *(str(a[k]) for k in axes)]
        if s.result is None:
            row.append(f"{s.status}: {s.error}" if s.error else s.status)
            row += [""] * len(quantities)
        else:
            row.append("yes" if s.result.passed else "no")
            j = judged(s.result)
            for q in quantities:
                value, ci, verdict = j.get(q, (None, None, None))
                row.append(_fmt(value, ci) + (f" {verdict}" if verdict else ""))
        body.append(row)
    return head, body


def _summary(name: str, states: list[CellState], settings: str) -> str:
    c = counts(states)
    return (f"{len(states)} cells: {c['done']} ran ({c['passed']} passed every claim), "
            f"{c['failed']} failed, {c['pending']} not run. {settings}")


def markdown(name: str, states: list[CellState], pictures: list[Path], settings: str) -> str:
    head, body = _table(states)
    esc = [[cell.replace("|", "\\|") for cell in row] for row in [head, *body]]
    lines = [f"# Sweep {name}", "", _summary(name, states, settings), ""]
    lines += [f"![{p.stem}]({p.name})" for p in pictures]
    lines += ["", "| " + " | ".join(esc[0]) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in esc[1:]]
    return "\n".join(lines) + "\n"


def page(name: str, states: list[CellState], pictures: list[Path], settings: str) -> str:
    head, body = _table(states)
    imgs = "".join(
        f'<figure><img alt="{html.escape(p.stem)}" src="data:image/png;base64,'
        f'{base64.b64encode(p.read_bytes()).decode()}"><figcaption>{html.escape(p.stem)}</figcaption></figure>'
        for p in pictures)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in body)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>sweep {html.escape(name)}</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:12px}"
            "td,th{border:1px solid #ccc;padding:3px 6px}img{max-width:100%}</style></head><body>"
            f"<h1>Sweep {html.escape(name)}</h1><p>{html.escape(_summary(name, states, settings))}</p>{imgs}"
            "<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + f"</tr>{rows}</table>"
            "</body></html>\n")


def write_report(out: Path, name: str, states: list[CellState], settings: str = "") -> list[Path]:
    """Pictures, ``sweep.md`` and ``sweep.html`` into ``out``, all moved in together."""
    with staged_dir(out) as stage:
        pictures = draw(states, stage)
        (stage / "sweep.md").write_text(markdown(name, states, pictures, settings), encoding="utf-8")
        (stage / "sweep.html").write_text(page(name, states, pictures, settings), encoding="utf-8")
        names = [p.name for p in pictures] + ["sweep.md", "sweep.html"]
    for stale in out.glob("scores_by_*.png"):  # an axis that no longer varies
        if stale.name not in names:
            stale.unlink()
    return [out / n for n in names]
