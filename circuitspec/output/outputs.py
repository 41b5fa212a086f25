"""The output folder of a run: results.json, the diagram (SVG and PNG) and the two reports,
written together and moved in only once all of them succeeded."""

from __future__ import annotations

import os
from pathlib import Path

from circuitspec.output.atomic import atomic_write_text, staged_dir
from circuitspec.output.diagram import render_result
from circuitspec.output.report import SVG_NAME, render_markdown, render_report_page
from circuitspec.results import Result

__all__ = ["write_outputs", "write_report"]


def _write_reports(result: Result, folder: Path, svg: str) -> tuple[Path, Path]:
    md = atomic_write_text(folder / "report.md", render_markdown(result))
    page = atomic_write_text(folder / "report.html", render_report_page(result, svg))
    return md, page


def write_report(result: Result, out_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` into ``out_dir``; draws ``circuit.svg`` if absent."""
    out = Path(out_dir)
    with staged_dir(out) as stage:
        svg_path = out / SVG_NAME
        if not svg_path.exists():
            svg_path = render_result(result, stage / SVG_NAME)
        _write_reports(result, stage, svg_path.read_text(encoding="utf-8"))
    return out / "report.md", out / "report.html"


def write_outputs(result: Result, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``results.json``, ``circuit.svg``, ``circuit.png``, ``report.md``, ``report.html``.

    All five are written into a staging folder inside ``out_dir`` and moved in
    only once every one succeeded; on any error ``out_dir`` keeps its old files
    and no partial file is left. Returns the final path of each file by name.
    """
    out = Path(out_dir)
    with staged_dir(out) as stage:
        result.save(stage / "results.json")
        svg = render_result(result, stage / SVG_NAME).read_text(encoding="utf-8")
        render_result(result, stage / "circuit.png")
        _write_reports(result, stage, svg)
        names = sorted(p.name for p in stage.iterdir())
    return {name: out / name for name in names}
