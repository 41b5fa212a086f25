"""Heads and their names: the one :data:`Head` type and the one grammar of head labels.

A head is ``(layer, head)``; users and every report write it ``L9H9`` (files also accept
``9.9``), and an MLP ``MLP3``. :func:`format_head` and :func:`parse_member` are the only
formatter and parser of these labels.
"""

from __future__ import annotations

import re

from circuitspec.errors import InvalidArgument

__all__ = ["Head", "format_head", "format_member", "parse_head", "parse_member"]

Head = tuple[int, int]

_HEAD = re.compile(r"^(?:L(\d+)H(\d+)|(\d+)\.(\d+))$")
_MLP = re.compile(r"^MLP(\d+)$")


def format_head(head: Head) -> str:
    """``(9, 9)`` -> ``"L9H9"``."""
    return f"L{head[0]}H{head[1]}"


def format_member(kind: str, layer: int, head: int | None) -> str:
    """A parsed member back to its label: ``("head", 9, 9)`` -> ``"L9H9"``, ``("mlp", 3, None)`` -> ``"MLP3"``."""
    return f"MLP{layer}" if kind == "mlp" else format_head((layer, head))  # type: ignore[arg-type]


def parse_member(ref: str) -> tuple[str, int, int | None]:
    """``"L9H9"``/``"9.9"`` -> ``("head", 9, 9)``; ``"MLP3"`` -> ``("mlp", 3, None)``."""
    text = str(ref).strip()
    if m := _HEAD.match(text):
        layer, head = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        return "head", int(layer), int(head)
    if m := _MLP.match(text):
        return "mlp", int(m.group(1)), None
    raise InvalidArgument(f"{ref!r} is not a head or MLP: write heads as L9H9 (or 9.9) and MLPs as MLP3")


def parse_head(ref: str) -> Head:
    """``"L9H9"`` (or ``"9.9"``) -> ``(9, 9)``; anything else, an MLP included, is a ValueError."""
    kind, layer, head = parse_member(ref)
    if kind != "head" or head is None:
        raise InvalidArgument(f"{ref!r} is not a head: write heads as L9H9 (or 9.9)")
    return layer, head
