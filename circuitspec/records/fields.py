"""The JSON field conventions of the ``results.json`` records, as types.

The records are frozen dataclasses; :mod:`circuitspec.results` reads and writes them through
one pydantic ``TypeAdapter``. What is special about a field is said in its type here:

- :data:`Num`: a float written as ``null`` when it is NaN or infinite (so the file stays
  strict JSON), and read back as ``None`` from ``null``, ``NaN`` or ``Infinity``;
- :data:`Interval`: a bootstrap interval, ``[low, high]`` of :data:`Num`;
- :data:`LOADS_AS_NONE`: a field a file may leave out (read as ``None``) that Python callers
  still pass, positionally;
- :data:`OMIT_NONE`: a field written only when it is set, so files keep the keys they had.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, PlainSerializer

__all__ = ["CONFIG", "Interval", "LOADS_AS_NONE", "Num", "OMIT_NONE", "PerPrompt", "VERDICTS", "Verdict", "finite_or_none"]

VERDICTS = ("verified", "refuted", "inconclusive")

Verdict = Literal["verified", "refuted", "inconclusive"]
"""``verified``: the interval clears the threshold; ``refuted``: it lies wholly on
the wrong side; ``inconclusive``: it straddles the threshold."""


def finite_or_none(x: Any) -> float | None:
    """``x`` as a float (numpy and torch scalars too), ``None`` when it is NaN or infinite."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


Num = Annotated[float | None, AfterValidator(finite_or_none), PlainSerializer(finite_or_none)]

Interval = tuple[Num, Num]

LOADS_AS_NONE = Field(default=None)

OMIT_NONE = Field(exclude_if=lambda value: value is None)

# Every record: unknown keys are ignored (files from newer versions still load), and each
# field's docstring becomes its description in the JSON Schema.
CONFIG = ConfigDict(extra="ignore", use_attribute_docstrings=True)

PerPrompt = Mapping[str, list[int | Num]]
"""Per-prompt lists by name: numbers (non-finite as ``null``), or integer ids (templates)."""
