"""``circuitspec explore``: run the notebook's analyses and write numbers and pictures.

Each analysis is a function in :mod:`circuitspec.analyses` returning labelled numbers;
this module runs the chosen ones in order, writes ``NAME.json`` and ``NAME.csv`` (the
numbers with their convention) and ``NAME.png`` (via :mod:`circuitspec.output.plots`) into
the output folder, and returns where everything went and how long each took.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from circuitspec.analyses.activation_patching import activation_patching, compare_heads
from circuitspec.analyses.attention import attention_maps, attention_summaries
from circuitspec.analyses.attribution import (
    backup_name_movers,
    direct_logit_attribution,
    logit_lens,
)
from circuitspec.analyses.grid import top_heads
from circuitspec.analyses.sweeps import path_patch_sweep
from circuitspec.errors import CircuitSpecError, did_you_mean
from circuitspec.output import plots
from circuitspec.output.atomic import atomic_write_text as write_text
from circuitspec.patching.engine import select_engine

if TYPE_CHECKING:
    from circuitspec.analyses.attribution import DLA
    from circuitspec.analyses.grid import Grid
    from circuitspec.bridge.loading import LoadedModel
    from circuitspec.data.dataset import Dataset

__all__ = ["ANALYSES", "Context", "explore", "file_stem"]


@dataclass
class Context:
    """What the analyses share: the model, the prompts, and results later steps reuse."""

    model: LoadedModel
    dataset: Dataset
    out: Path
    progress: bool = True
    sweep_method: str = "exact"
    n_name_movers: int = 3
    patch_prompts: int | None = None  # activation patching on the first N prompts only
    dla: DLA | None = None
    grids: dict[str, Grid] = field(default_factory=dict)
    written: dict[str, list[str]] = field(default_factory=dict)

    def get_dla(self) -> DLA:

        if self.dla is None:
            self.dla = direct_logit_attribution(self.model, self.dataset)
        return self.dla

    def name_movers(self) -> list[tuple[int, int]]:

        return top_heads(self.get_dla().per_head, self.n_name_movers)

    def save(self, grid: Grid, picture: Callable[[Grid, Path], Any] | None) -> None:

        stem = file_stem(grid.name)
        json_, csv_, png = (self.out / f"{stem}.{ext}" for ext in ("json", "csv", "png"))
        write_text(json_, json.dumps(grid.to_json(), indent=1) + "\n")
        write_text(csv_, grid.to_csv())
        files = [str(json_), str(csv_)]
        if picture is not None:
            picture(grid, png)
            files.append(str(png))
        self.grids[grid.name] = grid
        self.written[grid.name] = files

    def patched(self, kind: str) -> Grid:
        """An activation-patching grid, computed once per run."""

        if f"patch_{kind}" not in self.grids:
            dataset = self.dataset
            if self.patch_prompts is not None and self.patch_prompts < len(dataset):
                dataset = dataset.subset(range(self.patch_prompts))
            self.grids[f"patch_{kind}"] = activation_patching(
                self.model, dataset, kind, progress=self.progress)  # type: ignore[arg-type]
        return self.grids[f"patch_{kind}"]


def file_stem(name: str) -> str:
    """A grid's file name without extension: ``path_L20H0+L19H2.v@S2`` -> ``path_L20H0_L19H2_v@S2``."""
    return name.replace("/", "_").replace("+", "_").replace(".", "_")


def _logit_lens(ctx: Context) -> None:

    frozen = logit_lens(ctx.model, ctx.dataset)
    ctx.save(frozen, lambda g, p: plots.line(g, p, title="Logit lens: logit difference from "
                                            "the accumulated residual stream at END"))


def _dla(ctx: Context) -> None:
    dla = ctx.get_dla()
    ctx.save(dla.per_layer, lambda g, p: plots.line(g, p, title="Direct logit attribution per layer"))
    ctx.save(dla.per_head, lambda g, p: plots.heatmap(g, p, title="Direct logit attribution per head (END)"))


def _attention(ctx: Context) -> None:

    grid = attention_summaries(ctx.model, ctx.dataset)
    ctx.save(grid, lambda g, p: plots.heatmap(g, p, title="Mean attention between named positions",
                                              center=None, cmap="Blues", annotate=False))
    maps = attention_maps(ctx.model, ctx.dataset, ctx.name_movers())
    ctx.save(maps.as_grid(), lambda g, p: plots.attention_maps(maps, p, title="Top-DLA heads on prompt 0"))


def _patch(*kinds: str) -> Callable[[Context], None]:
    def run(ctx: Context) -> None:
        for kind in kinds:
            ctx.save(ctx.patched(kind), lambda g, p, kind=kind: plots.heatmap(  # type: ignore[misc]
                g, p, title=f"Activation patching ({kind}, denoising: 1 = clean)"))

    return run


def _patch_qkv(ctx: Context) -> None:
    """Each head's q, k, v and pattern, then output against pattern and against value."""

    _patch("q", "k", "v", "pattern")(ctx)
    for other in ("pattern", "v"):
        grid = compare_heads(ctx.model, ctx.patched(other), ctx.patched("head_out"))
        ctx.save(grid, lambda g, p: plots.scatter(
            g, p, title=f"Activation patching per head: {g.cols[0]} vs output (1 = clean)"))


def _path_sweeps(ctx: Context) -> None:
    """The notebook's level-by-level search: logits, name movers' q, then one level down twice.

    Each next receiver group is the previous sweep's strongest (most negative) sender, plus
    the second strongest when its effect is at least half as large: a weak second receiver
    in an early layer would cut the next sweep's senders to the layers before it.
    """

    engine = select_engine(ctx.model, ctx.dataset) if ctx.sweep_method == "exact" else None
    receivers: list[tuple[int, int]] = []
    grid: Grid | None = None
    for via, at in ((None, "END"), ("q", "END"), ("v", "S2"), ("k", "S1+1")):
        if via == "q":
            receivers = ctx.name_movers()
        elif via is not None and grid is not None:
            best = top_heads(grid, 2, largest=False)
            receivers = [h for h in best if grid.values[h] <= 0.5 * grid.values[best[0]]]
        if via is not None and (at not in ctx.dataset.positions or min(lay for lay, _ in receivers) == 0):
            break
        grid = path_patch_sweep(ctx.model, ctx.dataset, receivers, via, at,  # type: ignore[arg-type]
                                method=ctx.sweep_method, progress=ctx.progress,  # type: ignore[arg-type]
                                engine=engine)
        ctx.save(grid, lambda g, p: plots.heatmap(g, p, title=g.name + " (path patching; -1 = whole gap)"))


def _backup(ctx: Context) -> None:

    grid = backup_name_movers(ctx.model, ctx.dataset, ctx.name_movers(), before=ctx.get_dla())
    ctx.save(grid, lambda g, p: plots.scatter(
        g, p, title=f"DLA per head before/after ablating {', '.join(g.extra['ablated'])}"))


ANALYSES: dict[str, Callable[[Context], None]] = {
    "logit_lens": _logit_lens,
    "dla": _dla,
    "attention": _attention,
    "patch_resid": _patch("resid_pre"),
    "patch_attn_mlp": _patch("attn_out", "mlp_out"),
    "patch_heads": _patch("head_out"),
    "patch_heads_by_pos": _patch("head_out_by_pos"),
    "patch_qkv": _patch_qkv,
    "path_sweeps": _path_sweeps,
    "backup": _backup,
}


def explore(
    model: LoadedModel,
    dataset: Dataset,
    out: str | Path,
    *,
    only: Sequence[str] | None = None,
    progress: bool = True,
    sweep_method: str = "exact",
    patch_prompts: int | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the chosen analyses (all by default); return {files, seconds} per analysis.

    ``patch_prompts`` limits activation patching (about 3,000 patched cells on a 30-layer
    model) to the first N prompts; the other analyses use them all.
    """
    names = list(only) if only else list(ANALYSES)
    unknown = [n for n in names if n not in ANALYSES]
    if unknown:

        raise CircuitSpecError(
            f"unknown analysis {unknown[0]!r}{did_you_mean(unknown[0], ANALYSES)}; "
            f"choose from {', '.join(ANALYSES)}"
        )
    ctx = Context(model, dataset, Path(out), progress=progress, sweep_method=sweep_method,
                  patch_prompts=patch_prompts)
    ctx.out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    for name in names:
        start = time.perf_counter()
        ANALYSES[name](ctx)
        seconds[name] = round(time.perf_counter() - start, 2)
        if log:
            log(f"{name}: {seconds[name]:.1f} s")
    summary = {"model": model.reference, "n_prompts": len(dataset),
               "patch_prompts": min(patch_prompts or len(dataset), len(dataset)), "seconds": seconds,
               "files": ctx.written}

    write_text(ctx.out / "explore.json", json.dumps(summary, indent=1) + "\n")
    return summary
