"""From an edge-scored graph to a hypothesis file, with an account of what changed.

The tools' graphs and circuitspec's hypotheses do not say the same things:

- a tool's edge joins two components at every token position at once; a
  hypothesis edge joins two *groups* at one named position (END, S2, ...);
- a tool's MLPs and input embedding are graph nodes; circuitspec recomputes MLPs
  on every path and keeps the embeddings clean, so edges into MLPs and edges
  from the input have no counterpart (MLPs stay possible senders);
- a hypothesis edge is one joint patch of all its senders into all its receivers.

:func:`to_hypothesis` maps every selected edge and returns, beside the YAML text,
one :class:`~circuitspec.formats.graph.Note` for each of those differences that
the graph actually hit, with counts. Nothing is dropped silently.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from circuitspec.errors import FormatError, HypothesisError
from circuitspec.formats.graph import GraphEdge, Note, ScoredGraph, layer_of, parse_component
from circuitspec.spec.heads import format_member, parse_member
from circuitspec.spec.locate import compose_located
from circuitspec.spec.schema import Role

__all__ = ["ImportOptions", "RoleGroup", "load_role_map", "to_hypothesis"]

_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.+-]*$")


class RoleGroup(BaseModel):
    """One group of a role map: the heads that play one role, and where they read their inputs."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)

    role: Role
    """The group's role (name_mover, s_inhibition, ..., other)."""
    heads: list[str]
    """Members, as in a hypothesis: L9H9 (or 9.9) and MLP3."""
    at: dict[Literal["q", "k", "v"], str] = {}
    """Where the group reads each input, e.g. {q: END, k: S2, v: S2}; default --at."""
    description: str | None = None
    """Free text, copied into the hypothesis."""


@dataclass(frozen=True)
class ImportOptions:
    """How graph edges become hypothesis edges."""

    model: str
    """The model reference written into the hypothesis."""
    group_by: Literal["head", "layer"] = "head"
    """Heads outside the role map: one group per head, or per layer."""
    at: dict[str, str] = field(default_factory=lambda: {"q": "END", "k": "END", "v": "END"})
    """Default position per receiver input."""
    roles: dict[str, RoleGroup] | None = None
    """Role map: group name -> RoleGroup."""
    roles_source: str | None = None
    name: str = "imported"
    n_prompts: int = 64
    seed: int = 0


def load_role_map(path: Path) -> dict[str, RoleGroup]:
    """A role map YAML (group -> {role, heads, at}); a hypothesis file also works: its nodes,
    with the positions its edges read each group at."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FormatError(f"{source}: cannot read role map ({exc.strerror})") from None
    data, locations, problems = compose_located(text)
    if problems:
        raise HypothesisError(source, problems)
    if not isinstance(data, dict) or not data:
        raise FormatError(f"{source}: a role map is a mapping: group -> {{role, heads, at}}")
    at: dict[str, dict[str, str]] = defaultdict(dict)
    prefix: tuple[str, ...] = ()
    if "nodes" in data and isinstance(data["nodes"], dict):  # a hypothesis file
        for edge in data.get("edges") or []:
            if isinstance(edge, dict) and edge.get("via") in ("q", "k", "v"):
                at[str(edge.get("to"))].setdefault(edge["via"], str(edge.get("at", "END")))
        data, prefix = data["nodes"], ("nodes",)
    groups = {}
    for name, spec in data.items():
        if isinstance(spec, dict) and prefix:
            spec = {k: v for k, v in spec.items() if k in ("role", "heads", "description")}
            spec["at"] = at.get(str(name), {})
        try:
            groups[str(name)] = RoleGroup.model_validate(spec)
        except ValidationError as exc:
            line = locations.get((*prefix, name), (None, None))[0]
            where = f"{source}:{line}" if line else source
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"])
            raise FormatError(f"{where}: group {name!r}: {field + ': ' if field else ''}"
                              f"{err['msg']}") from None
        for ref in groups[str(name)].heads:
            try:
                parse_member(ref)
            except ValueError as exc:
                raise FormatError(f"{source}: group {name!r}: {exc}") from None
    return groups


def _member_groups(members: set[str], opts: ImportOptions) -> tuple[dict[str, str], dict[str, str],
                                                                     list[Note]]:
    """member -> group, group -> role, and notes about the role map."""
    notes: list[Note] = []
    owner: dict[str, str] = {}
    roles: dict[str, str] = {}
    for group, spec in (opts.roles or {}).items():
        for ref in spec.heads:
            kind, layer, head = parse_member(ref)
            name = format_member(kind, layer, head)
            if name in owner:
                raise FormatError(f"{opts.roles_source}: {ref} is in groups {owner[name]!r} and "
                                  f"{group!r}; a head can play one role")
            owner[name] = group
            roles[group] = spec.role
    absent = sorted(set(owner) - members, key=_order_key)
    if absent:
        notes.append(Note("lost", f"role-map members not in the file's circuit left out: "
                                  f"{', '.join(absent)}", len(absent)))
    owner = {m: g for m, g in owner.items() if m in members}
    rest = sorted(members - set(owner), key=_order_key)
    for m in rest:
        kind, at_layer, _ = parse_component(m)
        group = m if opts.group_by == "head" or kind == "mlp" else f"layer{at_layer}"
        owner[m] = group
        roles.setdefault(group, "other")
    if opts.roles is not None and rest:
        notes.append(Note("assumed", f"components not in the role map got role other, one "
                                     f"group per {opts.group_by}: {', '.join(rest)}", len(rest)))
    return owner, roles, notes


def _order_key(name: str) -> tuple[int, int]:
    kind, layer, head = parse_component(name)
    return (layer_of(name), -1 if head is None else head)


def _position(edge: GraphEdge, group: str, opts: ImportOptions) -> str:
    if edge.dst == "logits":
        return "END"
    if edge.at is not None:
        return edge.at
    spec = (opts.roles or {}).get(group)
    if spec is not None and edge.via in spec.at:
        return spec.at[edge.via]  # type: ignore[index]
    return opts.at[edge.via or "q"]


def to_hypothesis(graph: ScoredGraph, edges: tuple[GraphEdge, ...], opts: ImportOptions,
                  n_kv_heads: int, n_heads: int) -> tuple[str, list[Note]]:
    """YAML text of a hypothesis holding ``edges`` (a selection of ``graph``), and the notes."""
    notes = list(graph.notes)
    into_mlp = [e for e in edges if parse_component(e.dst)[0] == "mlp"]
    from_input = [e for e in edges if e.src == "input" and e not in into_mlp]
    kept = [e for e in edges if e not in into_mlp and e not in from_input]
    if into_mlp:
        notes.append(Note("lost", "edges into MLPs dropped: circuitspec recomputes every MLP on "
                                  "every path, so an MLP is never a receiver", len(into_mlp)))
    if from_input:
        notes.append(Note("lost", "edges from the input embedding dropped: circuitspec keeps the "
                                  "embeddings clean, so every path from the input is always "
                                  "present", len(from_input)))
    mlp_senders = sum(parse_component(e.src)[0] == "mlp" for e in kept)
    if mlp_senders:
        notes.append(Note("kept", "edges from MLPs kept: the MLP is a member (MLPn) of the "
                                  "sending group", mlp_senders))
    if not kept:
        raise FormatError(f"{graph.source}: none of the {len(edges)} selected edges joins two "
                          "attention heads, or a head or MLP to the logits, so no hypothesis "
                          "edge is left")
    kv = sum(e.via in ("k", "v") for e in kept)
    if kv and n_kv_heads < n_heads:
        notes.append(Note("kept", f"k/v edges name query heads ({n_heads} query heads over "
                                  f"{n_kv_heads} key/value heads): circuitspec patches one query "
                                  "head's own keys/values, so no edge is folded onto the shared "
                                  "key/value head", kv))
    seqs = [e for e in kept if e.seq_idx is not None]
    if seqs:
        idx = sorted({e.seq_idx for e in seqs if e.seq_idx is not None})
        notes.append(Note("lost", f"token indices (seq_idx {', '.join(map(str, idx[:8]))}"
                                  f"{' ...' if len(idx) > 8 else ''}) not kept: circuitspec names "
                                  "positions (END, S2, ...) and its prompts differ in length; "
                                  "positions assumed as below", len(seqs)))
    members = {e.src for e in kept} | {e.dst for e in kept if e.dst != "logits"}
    owner, roles, group_notes = _member_groups(members, opts)
    notes += group_notes
    unpositioned = [e for e in kept if e.dst != "logits" and e.at is None]
    if unpositioned:
        by_role = "; per-group positions from the role map" if any(
            g.at for g in (opts.roles or {}).values()) else ""
        notes.append(Note("assumed", "positions: "
                          + ", ".join(f"{v} edges read at {p}" for v, p in opts.at.items()
                                      if any(e.via == v for e in unpositioned))
                          + f"{by_role}; edges to logits at END. Choose others with "
                          "--at q=END,k=S2,v=S2 or `at:` per group in --roles",
                          len(unpositioned)))
    grouped: dict[tuple[str, str, str | None, str], list[GraphEdge]] = defaultdict(list)
    inside = 0
    for e in kept:
        sg = owner[e.src]
        rg = "logits" if e.dst == "logits" else owner[e.dst]
        if sg == rg:
            inside += 1
            continue
        grouped[(sg, rg, e.via, _position(e, rg, opts))].append(e)
    if inside:
        notes.append(Note("lost", "edges inside one role group dropped: a hypothesis edge joins "
                                  "two groups", inside))
    group_members: dict[str, list[str]] = defaultdict(list)
    used = {g for key in grouped for g in key[:2] if g != "logits"}
    for m in sorted(owner, key=_order_key):
        if owner[m] in used:
            group_members[owner[m]].append(m)
    merged = added = 0
    lines = []
    for (sg, rg, via, at), srcs in grouped.items():
        senders = group_members[sg]
        receivers = ["logits"] if rg == "logits" else group_members[rg]
        bad = [(s, r) for s in senders for r in receivers if layer_of(s) >= layer_of(r)]
        if bad:
            s, r = bad[0]
            raise FormatError(f"{opts.roles_source or graph.source}: grouping puts {s} (group "
                              f"{sg!r}) before {r} (group {rg!r}): every sender must come before "
                              "every receiver; split the group in the role map")
        pairs = {(e.src, e.dst) for e in srcs}
        merged += len(srcs) - 1
        added += len(senders) * len(receivers) - len(pairs)
        lines.append(_edge_line(sg, rg, via, at, srcs, graph.format))
    if merged or added:
        notes.append(Note("lost", f"grouping merged head-level edges into {len(grouped)} group "
                                  f"edges, each one joint patch; it adds {added} sender-receiver "
                                  "pairs the file did not have", merged))
    notes.append(Note("assumed", "edges claim no sign (claims.edges.sign: any): the file's scores "
                                 "follow its own tool's sign convention"))
    return _yaml(graph, opts, group_members, roles, lines, notes), notes


def _q(text: str) -> str:
    return text if _PLAIN.match(text) and text not in ("logits", "null", "true", "false") \
        else json.dumps(text)


def _edge_line(sg: str, rg: str, via: str | None, at: str, srcs: list[GraphEdge], fmt: str) -> str:
    via_part = f", via: {via}" if via else ""
    to = "logits" if rg == "logits" else _q(rg)
    scores = [e.score for e in srcs if e.score is not None and e.has_score]
    if scores:
        how = f"{fmt} score {scores[0]:.4g}" if len(srcs) == 1 else (
            f"{len(srcs)} {fmt} edges, scores {min(scores):.4g}..{max(scores):.4g}")
    else:
        how = f"{len(srcs)} {fmt} edge{'s' if len(srcs) > 1 else ''}, no score"
    return f"  - {{from: {_q(sg)}, to: {to}{via_part}, at: {_q(at)}}}  # {how}"


def _yaml(graph: ScoredGraph, opts: ImportOptions, members: dict[str, list[str]],
          roles: dict[str, str], edge_lines: list[str], notes: list[Note]) -> str:
    out = [f"# Imported by `circuitspec import` from {graph.source} ({graph.format}).",
           "# What the mapping lost or assumed:"]
    out += [f"#   {n.line()}" for n in notes]
    out += [f"name: {_q(opts.name)}", f"model: {json.dumps(opts.model)}",
            f"task: {{kind: ioi, n_prompts: {opts.n_prompts}, seed: {opts.seed}, corruption: abc}}",
            "nodes:"]
    for group in sorted(members, key=lambda g: _order_key(members[g][0])):
        desc = (opts.roles or {}).get(group)
        extra = f", description: {json.dumps(desc.description)}" if desc and desc.description else ""
        out.append(f"  {_q(group)}: {{role: {roles[group]}, heads: [{', '.join(members[group])}]"
                   f"{extra}}}")
    out += ["edges:", *edge_lines, "claims:", "  edges: {sign: any}"]
    return "\n".join(out) + "\n"
