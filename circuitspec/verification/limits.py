"""Accepted ranges of the numeric run settings, shared by the command line and the Python API.

The command line turns each into a click range (so ``--n-prompts 0`` is a usage
error, exit 2, that states the range) and :meth:`Options.check
<circuitspec.verification.run.Options.check>` applies the same table to Python callers.
``None`` is an open end.
"""

from __future__ import annotations

__all__ = ["LIMITS", "check_limits", "describe"]

SEED_MAX = 2**32 - 1  # numpy's generators take seeds in [0, 2**32)

LIMITS: dict[str, tuple[int, int | None]] = {
    "n_prompts": (1, None),
    "seed": (0, SEED_MAX),
    "n_bootstrap": (10, 100_000),
    "n_random": (0, 10_000),
    "n_random_edge": (0, 10_000),
    "n_null_edges": (0, 1_000),
    "n_subsets": (0, 10_000),
    "greedy_steps": (0, 1_000),
    "minimality_random": (0, 10_000),
    "patch_prompts": (1, None),
    "confirm": (1, 1_000),
}


def describe(name: str) -> str:
    """The accepted range of ``name`` in words, e.g. ``between 10 and 100000``."""
    low, high = LIMITS[name]
    return f"at least {low}" if high is None else f"between {low} and {high}"


def check_limits(values: dict[str, object]) -> list[str]:
    """One message per value outside its range (``None`` means unset and passes)."""
    bad = []
    for name, value in values.items():
        if name not in LIMITS or value is None:
            continue
        low, high = LIMITS[name]
        if isinstance(value, bool) or not isinstance(value, int):
            bad.append(f"{name} must be a whole number {describe(name)}, not {value!r}")
        elif value < low or (high is not None and value > high):
            bad.append(f"{name} must be {describe(name)}, not {value}")
    return bad
