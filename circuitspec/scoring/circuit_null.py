"""The circuit-level nulls: how faithful are layer-matched random circuits?

A faithfulness of 0.9 means little if random circuits of the same shape reach 0.8. Each
random circuit maps every hypothesis head one-to-one onto a random head of its own layer
that is not in the hypothesis (:class:`~circuitspec.scoring.nulls.LayerMatched`), so it
has the hypothesis' layer profile, its group sizes and (with ``circuit_positions``) its
positions. A uniform draw over all heads would almost never contain the late heads that
carry the logits, so beating it would say nothing. Both levels use the same maps:

- node level (:func:`null_distribution`): the image heads run normally, every other
  head is ablated; draws are stacked into batched ablation passes;
- edge level (:func:`edge_null_distribution`): the hypothesis' wires mapped onto the
  image heads (the wiring kept); each draw costs an edge-level evaluation (a few passes),
  so its default count is smaller.

A random circuit counts against the hypothesis when its faithfulness is at least as
close to 1 as the real one's (``|1 - f_random| <= |1 - f_real|``), so an overshooting
circuit is not rewarded; ``p = (1 + b) / (1 + n)``. All draws come from the run seed's
``circuit`` stream.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from circuitspec.ablation.edge import Wire, edge_level_logit_diff
from circuitspec.ablation.node import AblationRunner, Head, Keep
from circuitspec.scoring.nulls import LayerMatched, MonteCarlo, NullDraws, run_null, stream

__all__ = ["CircuitMaps", "edge_null_distribution", "null_distribution"]


class CircuitMaps:
    """Layer-matched one-to-one maps of a circuit's heads, drawn on demand and kept, so the
    node- and edge-level nulls see the same random circuits (the ``i``-th draw of both)."""

    def __init__(self, heads: Sequence[Head], n_layers: int, n_heads: int, seed: int) -> None:
        self.heads = sorted({(int(L), int(h)) for L, h in heads})
        self.pool = LayerMatched(n_layers, n_heads, frozenset(self.heads))
        self.rng = stream(seed, "circuit")
        self.maps: list[tuple[dict[Head, Head], int]] = []

    @staticmethod
    def of(runner: AblationRunner, heads: Sequence[Head], seed: int) -> CircuitMaps:
        return CircuitMaps(heads, runner.n_layers, runner.n_heads, seed)

    @property
    def feasible(self) -> bool:
        return self.pool.feasible(self.heads)

    def get(self, i: int) -> tuple[dict[Head, Head], int]:
        while len(self.maps) <= i:
            self.maps.append(self.pool.draw(self.heads, self.rng))
        return self.maps[i]


def _closer(real: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda x: np.abs(1 - x) <= abs(1 - real)


def null_distribution(
    runner: AblationRunner,
    maps: CircuitMaps,
    *,
    real: float,
    rule: MonteCarlo,
    circuit_positions: Mapping[Head, Sequence[str]] | None = None,
    mlp_keep: Sequence[int] | None = None,
) -> NullDraws | None:
    """Node-level faithfulness of layer-matched random circuits; None when the model has
    too few heads outside the circuit."""
    if not maps.feasible:
        return None
    fm = float(runner.clean.double().mean())
    done = [0]

    def draw(k: int) -> tuple[np.ndarray, int]:
        keeps, off = [], 0
        for i in range(done[0], done[0] + k):
            image, shifted = maps.get(i)
            positions = None if circuit_positions is None else {
                image[h]: p for h, p in circuit_positions.items() if h in image}
            keeps.append(Keep.of(image.values(), mlp_keep, positions))
            off += shifted
        done[0] += k
        return runner.run(keeps).double().numpy().mean(1) / fm, off

    return run_null(draw, real, _closer(real), rule)


def edge_null_distribution(
    runner: AblationRunner,
    wires: Sequence[Wire],
    maps: CircuitMaps,
    *,
    real: float,
    rule: MonteCarlo,
) -> NullDraws | None:
    """Edge-level faithfulness of layer-matched random circuits wired like ``wires``."""
    if not maps.feasible:
        return None
    fm = float(runner.clean.double().mean())
    done = [0]

    def draw(k: int) -> tuple[np.ndarray, int]:
        values, off = [], 0
        for i in range(done[0], done[0] + k):
            image, shifted = maps.get(i)
            moved = [Wire(tuple(image[h] for h in w.senders), tuple(image[h] for h in w.receivers), w.via,
                          w.positions) for w in wires]
            values.append(float(edge_level_logit_diff(runner, moved).double().mean()) / fm)
            off += shifted
        done[0] += k
        return np.asarray(values), off

    return run_null(draw, real, _closer(real), rule)
