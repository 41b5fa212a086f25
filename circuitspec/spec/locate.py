"""Where each value sits in a hypothesis file, and problems reported in the file's words.

The YAML is composed (parsed, nothing constructed) so that each key keeps its line and
column (:func:`compose_located`); a pydantic error becomes a :class:`~circuitspec.errors.Problem`
at the key it concerns (:func:`pydantic_problems`), and :func:`locate` places any other
finding by its field path (``edges[2].via``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from circuitspec.errors import Problem, did_you_mean

__all__ = ["Loc", "compose_located", "format_loc", "locate", "pydantic_problems"]

Loc = tuple[str | int, ...]

def format_loc(loc: Loc) -> str:
    """``("edges", 2, "via")`` -> ``"edges[2].via"``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def locate(loc: Loc, message: str, locations: dict[Loc, tuple[int, int]]) -> Problem:
    probe = tuple(loc)
    while probe and probe not in locations:
        probe = probe[:-1]
    line, col = locations.get(probe, (1, 1))
    return Problem(format_loc(loc), message, line, col)


def _clean_loc(loc: tuple[Any, ...], data: Any, missing: bool) -> Loc:
    """Drop pydantic's union-member tags, keeping only keys that exist in the data."""
    out: list[str | int] = []
    cur = data
    for i, part in enumerate(loc):
        if isinstance(cur, dict) and part in cur:
            out.append(part)
            cur = cur[part]
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            out.append(part)
            cur = cur[part]
        elif missing and i == len(loc) - 1 and isinstance(cur, dict):
            out.append(part)
    return tuple(out)


def pydantic_problems(exc: Any, data: Any, locations: dict, field_names: Sequence[str] = ()) -> list[Problem]:
    """One located Problem per pydantic error, in the words of the file; an unknown key is
    matched against ``field_names`` for 'did you mean'."""
    problems: list[Problem] = []
    errors = [(e, _clean_loc(e["loc"], data, missing=e["type"] == "missing")) for e in exc.errors()]
    seen: set[Loc] = set()
    for err, loc in errors:
        kind = err["type"]
        if loc in seen:  # a union (model: str | mapping) fails once per member
            continue
        if len(loc) < len(err["loc"]) and any(o[: len(loc)] == loc and len(o) > len(loc)
                                              for _, o in errors):
            continue  # a union member failed as a whole; a deeper error says why
        seen.add(loc)
        value = err.get("input")
        if kind == "extra_forbidden":
            key = loc[-1] if loc else "?"
            msg = f"unknown key {key!r}{did_you_mean(str(key), list(field_names))}"
        elif kind == "missing":
            msg = f"required key {loc[-1]!r} is missing"
        elif kind == "literal_error":
            choices = re.findall(r"'([^']*)'", err.get("ctx", {}).get("expected", ""))
            msg = f"{value!r} is not allowed; choose one of {', '.join(choices)}"
            msg += did_you_mean(str(value), choices)
        elif kind == "value_error":
            msg = str(err["ctx"]["error"])
        elif loc and loc[0] == "model" and len(loc) == 1:
            msg = f"expected a model name or a mapping {{name, revision, dtype, device}}, got {value!r}"
        else:
            msg = f"{err['msg']}, got {value!r}"
        problems.append(locate(loc, msg, locations))
    return problems


_PLAIN_TAGS = {
    "tag:yaml.org,2002:" + t for t in ("str", "int", "float", "bool", "null", "map", "seq")
}


def compose_located(text: str) -> tuple[Any, dict[Loc, tuple[int, int]], list[Problem]]:
    """Plain data from YAML, the 1-based (line, column) of every key and item, and problems.

    We compose the node tree (parsing only, nothing constructed) and build plain values
    ourselves, so that tags like ``!!python/object`` are reported rather than obeyed,
    and every duplicate key is reported at its own line.
    """
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError
    from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode

    yaml = YAML(typ="safe", pure=True)
    try:
        root = yaml.compose(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        return None, {}, [Problem("", f"YAML syntax error: {what}", line, col)]
    problems: list[Problem] = []

    def where(node: Any) -> tuple[int, int]:
        return node.start_mark.line + 1, node.start_mark.column + 1

    locations: dict[Loc, tuple[int, int]] = {(): where(root) if root is not None else (1, 1)}

    def build(node: Any, loc: Loc) -> Any:
        if node.tag not in _PLAIN_TAGS:
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            problems.append(locate(loc, f"YAML tag {tag} is not allowed: hypothesis files "
                                     "hold plain data (strings, numbers, lists, mappings)",
                                     {loc: where(node)}))
            return None
        if isinstance(node, MappingNode):
            out: dict[Any, Any] = {}
            for knode, vnode in node.value:
                key = knode.value if isinstance(knode, ScalarNode) else str(knode.value)
                if key in out:
                    first = locations[loc + (key,)][0]
                    problems.append(locate(loc + (key,), f"duplicate key {key!r} (first "
                                             f"defined on line {first}); rename one of them",
                                             {loc + (key,): where(knode)}))
                    continue
                locations[loc + (key,)] = where(knode)
                out[key] = build(vnode, loc + (key,))
            return out
        if isinstance(node, SequenceNode):
            items = []
            for i, item in enumerate(node.value):
                locations[loc + (i,)] = where(item)
                items.append(build(item, loc + (i,)))
            return items
        return yaml.constructor.construct_object(node, deep=True)

    data = build(root, ()) if root is not None else None
    return data, locations, problems
