"""The semantic checks of a hypothesis file: those that need the whole file but no model.

Groups hold heads, edges join known groups in forward order at positions the task
defines, and the task's prompts are well formed. Each finding is a field path and a
message; :func:`circuitspec.spec.load.load_with_problems` places them by line. Checks
against a model's shape are :func:`circuitspec.spec.load.model_problems`.
"""

from __future__ import annotations

from collections.abc import Iterator

from circuitspec.data.tasks import prompt_records, task_positions
from circuitspec.errors import PromptError, TaskError, did_you_mean
from circuitspec.spec.heads import format_member, parse_member
from circuitspec.spec.locate import Loc
from circuitspec.spec.schema import Hypothesis

Finding = tuple[Loc, str]


def semantic_problems(hyp: Hypothesis) -> list[Finding]:
    return [*_groups(hyp), *_edges(hyp), *_task(hyp)]


def _groups(hyp: Hypothesis) -> Iterator[Finding]:
    for name, spec in hyp.nodes.items():
        if name == "logits":
            yield ("nodes", name), "'logits' is reserved for the model output; rename the group"
        if name == "input" and hyp.graph == "mib":
            yield ("nodes", name), ("'input' is reserved for the token embedding under graph: mib; "
                                    "rename the group")
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
    return [parse_member(ref) for ref in hyp.nodes[group].heads]


def _edges(hyp: Hypothesis) -> Iterator[Finding]:
    groups = list(hyp.nodes)
    names: dict[tuple, int] = {}
    positions = None
    for i, edge in enumerate(hyp.edges):
        loc = ("edges", i)
        ok = True
        if edge.sender == "input" and "input" not in hyp.nodes:
            ok = False  # the token embedding: a graph edge, scored under graph: mib only
            if hyp.graph != "mib":
                yield (*loc, "from"), ("'input' (the token embedding) is a sender only under "
                                       "graph: mib, where the embedding is a graph node; "
                                       "circuitspec's own graph keeps the embeddings clean")
        elif edge.sender not in hyp.nodes:
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
            return format_member(*m)

        yield (("edges", i, "to"),
               f"edge goes backward: receiver {show(first)} (layer {first[1]}) does not come after "
               f"sender {show(last)} (layer {last[1]}) in the forward pass; every receiving head "
               "must be in a later layer than every sender (an MLP in layer L feeds heads in "
               "layer L+1 and later)")


def _positions(hyp: Hypothesis) -> set[str]:
    try:
        return task_positions(hyp.task)
    except TaskError:
        return set()  # reported by _task


def _task(hyp: Hypothesis) -> Iterator[Finding]:
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
