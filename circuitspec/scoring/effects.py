"""The effect of a patch: how much of the clean-to-corrupt gap it moves, with its interval.

``effect = (M_patched - M_clean) / (M_clean - M_corrupt)``, means over prompts: 0 is no
effect, -1 the whole gap. The interval resamples the three per-prompt arrays jointly
(prompts, or templates as clusters).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from circuitspec.scoring.stats import bootstrap_paired_ci

__all__ = ["effect_ci", "effect_of"]


def effect_of(patched: np.ndarray, clean: np.ndarray, corrupt: np.ndarray) -> float:
    """(M_patched - M_clean) / (M_clean - M_corrupt), means over prompts."""
    return float((patched.mean() - clean.mean()) / (clean.mean() - corrupt.mean()))


def effect_ci(
    patched: np.ndarray, clean: np.ndarray, corrupt: np.ndarray, *, n: int, seed: int, level: float,
    clusters: Sequence[int] | None = None,
) -> tuple[float, float]:
    """Bootstrap interval of the effect, resampling prompts (or ``clusters`` of them) jointly."""

    def stat(p: np.ndarray, c: np.ndarray, r: np.ndarray) -> np.ndarray:
        return (p.mean(1) - c.mean(1)) / (c.mean(1) - r.mean(1))

    return bootstrap_paired_ci([patched, clean, corrupt], stat, n_resamples=n, seed=seed, level=level,
                               clusters=clusters)
