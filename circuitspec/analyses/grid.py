"""A labelled 2-D array: what every exploratory analysis returns."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from circuitspec.spec.heads import format_head


@dataclass(frozen=True)
class Grid:
    """``values[i, j]`` is the number for row ``rows[i]`` and column ``cols[j]``.

    ``note`` states the convention (direction of patching, normalisation, final-norm
    scale) so a saved file explains itself.
    """

    name: str
    values: torch.Tensor  # [rows, cols], float
    rows: tuple[str, ...]
    cols: tuple[str, ...]
    row_axis: str
    col_axis: str
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if tuple(self.values.shape) != (len(self.rows), len(self.cols)):
            raise ValueError(
                f"{self.name}: values are {tuple(self.values.shape)}, labels "
                f"{len(self.rows)} x {len(self.cols)}"
            )

    def at(self, row: str, col: str) -> float:
        return float(self.values[self.rows.index(row), self.cols.index(col)])

    def to_json(self) -> dict[str, Any]:
        def num(x: float) -> float | None:
            return None if math.isnan(x) else round(x, 6)

        return {
            "name": self.name,
            "note": self.note,
            "row_axis": self.row_axis,
            "col_axis": self.col_axis,
            "rows": list(self.rows),
            "cols": list(self.cols),
            "values": [[num(float(v)) for v in row] for row in self.values.tolist()],
            **({"extra": self.extra} if self.extra else {}),
        }

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow([f"{self.row_axis}\\{self.col_axis}", *self.cols])
        for label, row in zip(self.rows, self.values.tolist(), strict=True):
            writer.writerow([label, *(f"{v:.6g}" for v in row)])
        return out.getvalue()


def head_label(layer: int, head: int) -> str:
    return format_head((layer, head))


def head_grid(
    name: str, values: torch.Tensor, note: str = "", **extra: Any
) -> Grid:
    """A [layers, heads] grid with L/H labels."""
    n_layers, n_heads = values.shape
    return Grid(
        name, values.float(), tuple(str(i) for i in range(n_layers)),
        tuple(str(i) for i in range(n_heads)), "layer", "head", note, dict(extra),
    )


def top_heads(grid: Grid, k: int, *, largest: bool = True) -> list[tuple[int, int]]:
    """The k (layer, head) cells of a head grid with the largest (or smallest) values."""
    flat = grid.values.flatten().clone()
    flat[torch.isnan(flat)] = -math.inf if largest else math.inf
    order = torch.argsort(flat, descending=largest)[:k]
    n_heads = grid.values.shape[1]
    return [(int(i) // n_heads, int(i) % n_heads) for i in order]
