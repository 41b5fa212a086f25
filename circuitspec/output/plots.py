"""PNG pictures of the exploratory analyses (matplotlib, Agg backend, imported lazily).

Every function takes a result from :mod:`circuitspec.analyses` and a path, writes one
PNG and never touches the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from circuitspec.spec.heads import format_head

if TYPE_CHECKING:
    from circuitspec.analyses.attention import AttentionMaps
    from circuitspec.analyses.grid import Grid


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path


def line(grid: Grid, path: str | Path, *, title: str, ylabel: str = "logit difference") -> Path:
    """Each row of the grid as a line over its columns (logit lens, DLA per layer)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6, len(grid.cols) * 0.25), 3.6))
    for label, row in zip(grid.rows, grid.values.tolist(), strict=True):
        ax.plot(range(len(grid.cols)), row, marker="o", ms=3, label=label)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xticks(range(len(grid.cols)), grid.cols, rotation=90, fontsize=7)
    ax.set_xlabel(grid.col_axis)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if len(grid.rows) > 1:
        ax.legend(fontsize=8)
    return _save(fig, path)


def heatmap(
    grid: Grid, path: str | Path, *, title: str, center: float | None = 0.0, cmap: str = "RdBu",
    annotate: bool | None = None,
) -> Path:
    """A grid as a heat map, diverging around ``center`` (None: sequential)."""
    import numpy as np

    plt = _plt()
    values = grid.values.numpy()
    n_rows, n_cols = values.shape
    height = min(14, max(3, 0.22 * n_rows + 1.5))
    width = min(14, max(4, 0.45 * n_cols + 2.5))
    fig, ax = plt.subplots(figsize=(width, height))
    finite = values[np.isfinite(values)]
    if center is not None:
        span = float(np.abs(finite - center).max()) if finite.size else 1.0
        kw = {"vmin": center - span, "vmax": center + span, "cmap": cmap}
    else:
        kw = {"cmap": cmap}
    im = ax.imshow(values, aspect="auto", interpolation="nearest", **kw)
    fig.colorbar(im, ax=ax, shrink=0.8)
    step = max(1, n_rows // 40)
    ax.set_yticks(range(0, n_rows, step), grid.rows[::step], fontsize=7)
    ax.set_xticks(range(n_cols), grid.cols, rotation=90 if n_cols > 12 else 0, fontsize=7)
    ax.set_ylabel(grid.row_axis)
    ax.set_xlabel(grid.col_axis)
    ax.set_title(title, fontsize=10)
    if annotate if annotate is not None else n_rows * n_cols <= 120:
        for i in range(n_rows):
            for j in range(n_cols):
                if np.isfinite(values[i, j]):
                    ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=6)
    return _save(fig, path)


def attention_maps(maps: AttentionMaps, path: str | Path, *, title: str) -> Path:
    """One panel per head: attention from each query token (rows) to each key (columns)."""
    plt = _plt()
    n = len(maps.heads)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    size = 0.28 * len(maps.tokens) + 1.5
    fig, axes = plt.subplots(rows, cols, figsize=(cols * size, rows * size), squeeze=False)
    labels = [t.replace("\n", "\\n") for t in maps.tokens]
    for ax, (layer, head), pattern in zip(axes.flat, maps.heads, maps.patterns, strict=False):
        ax.imshow(pattern.numpy(), cmap="Blues", vmin=0, vmax=1)
        ax.set_title(format_head((layer, head)), fontsize=9)
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
        ax.set_yticks(range(len(labels)), labels, fontsize=6)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def scatter(
    grid: Grid, path: str | Path, *, title: str, label_top: int = 8
) -> Path:
    """Column 0 against column 1 of a two-column grid, labelling the largest changes."""
    plt = _plt()
    x, y = grid.values[:, 0], grid.values[:, 1]
    fig, ax = plt.subplots(figsize=(5.2, 5))
    ax.scatter(x.numpy(), y.numpy(), s=12, alpha=0.7)
    lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
    ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8, ls="--")
    moved = (y - x).abs() + x.abs() * 0.5
    for i in moved.argsort(descending=True)[:label_top].tolist():
        ax.annotate(grid.rows[i], (float(x[i]), float(y[i])), fontsize=7)
    ax.set_xlabel(f"{grid.cols[0]}")
    ax.set_ylabel(f"{grid.cols[1]}")
    ax.set_title(title, fontsize=10)
    return _save(fig, path)
