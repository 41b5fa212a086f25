"""What activation patching patches: one activation per :class:`Patch`, a variant is a tuple of them.

Shared by the stacked forward passes (:mod:`.activation_patching`) and the row-resumed
ones (:mod:`.row_resume`), which both run a list of variants.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Patch", "Variant"]


@dataclass(frozen=True)
class Patch:
    """One activation to take from the clean run: a hook, optionally one head and position."""

    hook: str
    head: int | None = None  # None: the whole activation
    position: str | None = None  # a named position; None: every position


Variant = tuple[Patch, ...]
