"""``circuitspec import`` and ``circuitspec export``: read or write a circuit file in a format.

:func:`import_file` reads a file into a :class:`~circuitspec.formats.graph.ScoredGraph`,
checks it against the model, selects the circuit's edges, maps them to a
hypothesis (:mod:`circuitspec.formats.mapping`), validates that hypothesis as
``circuitspec validate`` would, and only then writes it. :func:`export_file`
goes the other way (:mod:`circuitspec.formats.export`). Both return the notes
saying what the conversion lost or assumed.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from circuitspec.bridge.loading import ModelInfo, model_info
from circuitspec.data.ioi import IOI_POSITIONS
from circuitspec.errors import CircuitSpecError, FormatError
from circuitspec.formats import acdc, auto_circuit, eap_ig, mib_pt  # the modules, not the package
from circuitspec.formats.export import load_source
from circuitspec.formats.graph import FORMATS, Note, ScoredGraph, check_fits, select_edges
from circuitspec.formats.mapping import ImportOptions, load_role_map, to_hypothesis
from circuitspec.output.atomic import atomic_write_text
from circuitspec.spec.load import load_with_problems, model_problems

__all__ = ["READERS", "WRITERS", "check_format", "export_file", "import_file", "parse_at"]

READERS: dict[str, Callable[[Path], ScoredGraph]] = {
    "eap-ig": eap_ig.read, "mib-pt": mib_pt.read, "acdc": acdc.read,
    "auto-circuit": auto_circuit.read,
}
WRITERS: dict[str, Callable[[ScoredGraph, Path], Path]] = {
    "eap-ig": eap_ig.write, "mib-pt": mib_pt.write, "acdc": acdc.write,
    "auto-circuit": auto_circuit.write,
}


def check_format(fmt: str) -> str:
    """``fmt`` if it is one of FORMATS; else a CircuitSpecError listing them."""
    if fmt not in FORMATS:
        raise CircuitSpecError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    return fmt


def parse_at(text: str | None) -> dict[str, str]:
    """``"q=END,k=S2,v=S2"`` -> a position per input (END for any not given)."""
    at = {"q": "END", "k": "END", "v": "END"}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        via, _, pos = part.partition("=")
        via, pos = via.strip(), pos.strip()
        if via not in at or not pos:
            raise CircuitSpecError(f"--at {text!r}: write q=POS,k=POS,v=POS, e.g. q=END,k=S2,v=S2")
        if pos not in IOI_POSITIONS:
            raise CircuitSpecError(f"--at {via}={pos}: the IOI task defines "
                                   f"{', '.join(IOI_POSITIONS)}")
        at[via] = pos
    return at


def import_file(path: Path, fmt: str, model: str, output: Path, *, top_k: int | None = None,
                threshold: float | None = None, in_graph: bool = False, roles: Path | None = None,
                group_by: str = "head", at: str | None = None, n_prompts: int = 64,
                seed: int = 0) -> tuple[Path, list[Note]]:
    """Read ``path`` in ``fmt``, write a valid hypothesis for ``model`` to ``output``."""
    if group_by not in ("head", "layer"):
        raise CircuitSpecError(f"--group {group_by!r}: choose head or layer")
    positions = parse_at(at)
    graph = READERS[check_format(fmt)](path)
    info = model_info(model)
    if info is None:
        raise CircuitSpecError(f"--model {model!r}: its shape is unknown here (the model hub is "
                               "not reachable); give a packaged alias or a local folder")
    check_fits(graph, info.n_layers, info.n_heads, model)
    edges, chosen = select_edges(graph, top_k=top_k, threshold=threshold, in_graph=in_graph)
    role_map = load_role_map(roles) if roles is not None else None
    opts = ImportOptions(model=model, group_by=group_by, at=positions,  # type: ignore[arg-type]
                         roles=role_map, roles_source=None if roles is None else str(roles),
                         name=f"imported-{path.stem}", n_prompts=n_prompts, seed=seed)
    graph = ScoredGraph(graph.source, graph.format, graph.edges, graph.shape,
                        (*graph.notes, chosen), graph.has_membership, graph.has_scores)
    text, notes = to_hypothesis(graph, edges, opts, info.n_kv_heads, info.n_heads)
    _check(text, output, info)
    return atomic_write_text(output, text), notes


def _check(text: str, output: Path, info: ModelInfo) -> None:
    """Validate the hypothesis text as `circuitspec validate` would, before writing it."""
    folder = output.parent if output.parent.exists() else Path(tempfile.gettempdir())
    fd, tmp = tempfile.mkstemp(suffix=".yaml", dir=folder, prefix=".import-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        hyp, problems = load_with_problems(tmp)
        if hyp is not None:
            problems += model_problems(hyp, info)
    finally:
        os.unlink(tmp)
    if problems:
        lines = "\n".join(p.format(str(output)) for p in problems)
        raise FormatError(f"the imported hypothesis would not be valid, nothing written:\n{lines}")


def export_file(source: Path, fmt: str, output: Path) -> tuple[Path, list[Note]]:
    """Write a hypothesis or results.json as a circuit file in ``fmt``."""
    graph = load_source(source, check_format(fmt))
    if fmt in ("eap-ig", "mib-pt") and graph.shape.d_model is None:
        raise FormatError(f"{source}: {fmt} records d_model, and the model's is unknown here")
    return WRITERS[fmt](graph, output), list(graph.notes)
