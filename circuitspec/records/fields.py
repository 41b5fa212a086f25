"""Field conversions shared by the ``results.json`` classes.

Verdict words, intervals, and the helpers that turn JSON values into Python
ones and back: non-finite floats become ``null``, a missing required field
raises :class:`ResultFileError` naming where it was expected.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

from circuitspec.errors import ResultFileError

VERDICTS = ("verified", "refuted", "inconclusive")

Verdict = Literal["verified", "refuted", "inconclusive"]
"""``verified``: the interval clears the threshold; ``refuted``: it lies wholly on
the wrong side; ``inconclusive``: it straddles the threshold."""

Interval = tuple[float | None, float | None]


# --- JSON helpers ---------------------------------------------------------------------------


def _num(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)  # numpy / torch scalars too
    return x if math.isfinite(x) else None


def _ci(x: Any) -> Interval | None:
    if x is None:
        return None
    low, high = x
    return (_num(low), _num(high))


def _ci_json(ci: Interval | None) -> list[float | None] | None:
    return None if ci is None else [_num(ci[0]), _num(ci[1])]


def _verdict(x: Any, where: str, optional: bool = False) -> Any:
    if x is None and optional:
        return None
    if x not in VERDICTS:
        raise ResultFileError(f"{where}: verdict must be one of {', '.join(VERDICTS)}, not {x!r}")
    return x


def _req(d: Mapping[str, Any], key: str, where: str) -> Any:
    if not isinstance(d, Mapping):
        raise ResultFileError(f"{where}: expected an object, got {type(d).__name__}")
    if key not in d:
        raise ResultFileError(f"{where}: missing required field {key!r}")
    return d[key]


def _at(x: Any) -> str | tuple[str, ...] | None:
    return tuple(x) if isinstance(x, list | tuple) else x


def _at_json(x: str | tuple[str, ...] | None) -> str | list[str] | None:
    return list(x) if isinstance(x, tuple) else x
