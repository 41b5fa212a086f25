"""``circuitspec suggest``: a draft IOI hypothesis from DLA, attention and path patching.

The draft follows the notebook's level-by-level search (Wang et al. 2022):

1. name movers: the heads with the largest positive direct logit attribution (DLA)
   at END that attend from END to IO (at least ``MIN_ATTENTION``, and more than to S);
   heads with large positive DLA that attend to S2 instead form their own group (they
   write "not S"); negative name movers: the most negative DLA;
2. S-inhibition: the strongest senders into the name movers' queries at END;
3. induction and duplicate-token heads: the strongest senders into the S-inhibition
   heads' values at S2, split by whether they attend from S2 to S1+1 (induction) or
   to S1 (duplicate-token);
4. previous-token heads: the strongest senders into the induction heads' keys at S1+1.

Each sweep screens every earlier head with the gradient estimate and confirms the
strongest ``confirm`` with the path-patching engine (see :mod:`circuitspec.analyses.sweeps`);
the heads are chosen on the engine's numbers. The evidence goes into the YAML as
comments. The draft is a starting point to edit, then ``circuitspec verify``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from circuitspec.analyses.attention import attention_summaries
from circuitspec.analyses.attribution import direct_logit_attribution
from circuitspec.analyses.grid import head_label
from circuitspec.analyses.sweeps import path_patch_sweep
from circuitspec.output.atomic import atomic_write_text
from circuitspec.patching.engine import select_engine
from circuitspec.spec.heads import Head
from circuitspec.spec.load import load_hypothesis

if TYPE_CHECKING:
    from circuitspec.analyses.grid import Grid
    from circuitspec.bridge.loading import LoadedModel
    from circuitspec.data.dataset import Dataset


MIN_ATTENTION = 0.1  # mean END attention a head needs to count as attending to a name

__all__ = ["Draft", "draft_hypothesis", "suggest", "write_draft"]


@dataclass
class Draft:
    """Groups (name -> role, heads), edges, and a line of evidence per head."""

    groups: dict[str, tuple[str, list[Head]]] = field(default_factory=dict)
    edges: list[dict[str, str]] = field(default_factory=list)
    evidence: dict[str, list[str]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def draft_hypothesis(
    model: LoadedModel,
    dataset: Dataset,
    *,
    n_name_movers: int = 3,
    n_per_role: int = 2,
    confirm: int = 6,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> Draft:
    """Find candidate heads per role and the edges between them."""
    import time

    draft = Draft()
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        draft.seconds[name] = round(time.perf_counter() - clock, 2)
        clock = time.perf_counter()
        if log:
            log(f"{name}: {draft.seconds[name]:.1f} s")

    dla = direct_logit_attribution(model, dataset).per_head
    attn = attention_summaries(model, dataset)
    lap("dla+attention")
    engine = select_engine(model, dataset)
    lap("engine caches")

    def dla_of(h: Head) -> float:
        return float(dla.values[h])

    def att(h: Head, col: str) -> float:
        return attn.at(head_label(*h), col) if col in attn.cols else 0.0

    ranked = sorted(((lay, h) for lay in range(dla.values.shape[0])
                     for h in range(dla.values.shape[1])), key=dla_of, reverse=True)
    top = abs(dla_of(ranked[0])) or 1.0

    def looks_at(h: Head, name: str, others: tuple[str, ...]) -> bool:
        """END attends to ``name`` at least MIN_ATTENTION and more than to ``others``."""
        here = att(h, f"END->{name}")
        return here >= MIN_ATTENTION and here > max(att(h, f"END->{o}") for o in others)

    strong = [h for h in ranked if dla_of(h) > 0.1 * top]
    movers = [h for h in strong if looks_at(h, "IO", ("S1", "S2"))][:n_name_movers] or ranked[:1]
    # Heads that raise the logit difference while attending to the repeated name write
    # "not S" rather than copying IO: their own group, so the name movers stay name movers.
    s_writers = [h for h in strong if h not in movers and looks_at(h, "S2", ("IO",))][:n_per_role]
    negative = [h for h in reversed(ranked) if dla_of(h) < -0.1 * top and h not in movers][:n_per_role]
    draft.groups["name_movers"] = ("name_mover", movers)
    draft.edges.append({"from": "name_movers", "to": "logits", "at": "END"})
    if s_writers:
        draft.groups["s_attending_movers"] = ("other", s_writers)
        draft.edges.append({"from": "s_attending_movers", "to": "logits", "at": "END"})
    if negative:
        draft.groups["negative_name_movers"] = ("negative_name_mover", negative)
        draft.edges.append({"from": "negative_name_movers", "to": "logits", "at": "END"})
    for h in movers + s_writers + negative:
        draft.evidence[head_label(*h)] = [
            f"DLA {dla_of(h):+.2f}, END->IO {att(h, 'END->IO'):.2f}, END->S2 {att(h, 'END->S2'):.2f}"
        ]

    def strongest(receivers: list[Head], via: str, at: str, what: str) -> list[tuple[Head, float]]:
        sweep = _sweep(model, dataset, engine, receivers, via, at, confirm, progress)
        lap(f"sweep {what}")
        exact = sweep.extra.get("exact", {})
        found = sorted(((_parse(k), v) for k, v in exact.items() if v < 0), key=lambda kv: kv[1])
        for head, effect in found:
            draft.evidence.setdefault(head_label(*head), []).append(
                f"path patching into {what}.{via}@{at}: {effect:+.3f}")
        return found

    s_inh = [h for h, _ in strongest(movers, "q", "END", "name_movers")][: n_per_role + 1]
    if not s_inh:
        return draft
    draft.groups["s_inhibition"] = ("s_inhibition", s_inh)
    draft.edges.append({"from": "s_inhibition", "to": "name_movers", "via": "q", "at": "END"})
    for h in s_inh:
        draft.evidence[head_label(*h)].append(f"END->S2 {att(h, 'END->S2'):.2f}")
    senders = [h for h, _ in strongest(s_inh, "v", "S2", "s_inhibition")]
    induction = [h for h in senders if att(h, "S2->S1+1") >= att(h, "S2->S1")][:n_per_role]
    duplicate = [h for h in senders if att(h, "S2->S1+1") < att(h, "S2->S1")][:n_per_role]
    for name, role, heads in (("induction", "induction", induction),
                              ("duplicate", "duplicate_token", duplicate)):
        if heads:
            draft.groups[name] = (role, heads)
            draft.edges.append({"from": name, "to": "s_inhibition", "via": "v", "at": "S2"})
        for h in heads:
            draft.evidence[head_label(*h)].append(
                f"S2->S1+1 {att(h, 'S2->S1+1'):.2f}, S2->S1 {att(h, 'S2->S1'):.2f}")
    if induction:
        previous = [h for h, _ in strongest(induction, "k", "S1+1", "induction")][:n_per_role]
        if previous:
            draft.groups["previous"] = ("previous_token", previous)
            draft.edges.append({"from": "previous", "to": "induction", "via": "k", "at": "S1+1"})
            for h in previous:
                draft.evidence[head_label(*h)].append(f"S1+1->S1 {att(h, 'S1+1->S1'):.2f}")
    return draft


def _sweep(model: Any, dataset: Any, engine: Any, receivers: list[Head], via: str, at: str,
           confirm: int, progress: bool) -> Grid:

    return path_patch_sweep(model, dataset, receivers, via, at, method="attribution",  # type: ignore[arg-type]
                            confirm=confirm, engine=engine, progress=progress)


def _parse(label: str) -> Head:
    layer, head = label[1:].split("H")
    return int(layer), int(head)


def write_draft(draft: Draft, path: str | Path, *, model_ref: str, n_prompts: int, seed: int,
                corruption: str = "abc", templates: list[int] | None = None,
                notes: Sequence[str] = (), extra: dict[str, Any] | None = None) -> Path:
    """Write the draft as a hypothesis file, with the evidence as YAML comments.

    ``notes``: more header comment lines; ``extra``: more top-level keys, after the task.
    """
    import io

    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    doc = CommentedMap()
    doc["name"] = f"ioi-draft-{Path(model_ref).name}"
    doc["description"] = "Draft from `circuitspec suggest`; review the heads, then verify."
    doc["model"] = model_ref
    # Verification must not reuse the prompts the heads were chosen on: the draft records
    # them as its discovery and verifies on the next seed (verify checks they are disjoint).
    # Corruption and templates change which prompts a seed names, so they are recorded too.
    doc["discovery"] = CommentedMap(seed=seed, n_prompts=n_prompts, corruption=corruption)
    if templates is not None:
        doc["discovery"]["templates"] = CommentedSeq(templates)
    doc["discovery"].fa.set_flow_style()
    task = CommentedMap(kind="ioi", n_prompts=max(n_prompts, 64), seed=seed + 1, corruption="abc")
    doc["task"] = task
    for key, value in (extra or {}).items():
        doc[key] = CommentedMap(value) if isinstance(value, dict) else value
        if isinstance(value, dict):
            doc[key].fa.set_flow_style()
    nodes = CommentedMap()
    for name, (role, heads) in draft.groups.items():
        members = CommentedSeq(head_label(*h) for h in heads)
        members.fa.set_flow_style()
        node = CommentedMap(role=role, heads=members)
        node.fa.set_flow_style()
        nodes[name] = node
        lines = [f"{head_label(*h)}: {'; '.join(draft.evidence.get(head_label(*h), []))}" for h in heads]
        nodes.yaml_set_comment_before_after_key(name, before="\n".join(lines), indent=2)
    doc["nodes"] = nodes
    edges = CommentedSeq()
    for edge in draft.edges:
        item = CommentedMap(edge)
        item.fa.set_flow_style()
        edges.append(item)
    doc["edges"] = edges
    doc.yaml_set_start_comment(
        "Drafted by `circuitspec suggest` from DLA, attention signatures and path patching\n"
        "(effects: (M_patched - M_clean) / (M_clean - M_corrupt), -1 = whole gap).\n"
        f"Timings (s): {draft.seconds}" + "".join(f"\n{line}" for line in notes)
    )
    yaml = YAML()
    yaml.width = 120
    buf = io.StringIO()
    yaml.dump(doc, buf)
    return atomic_write_text(path, buf.getvalue())


def suggest(
    model: LoadedModel, dataset: Dataset, out: str | Path, *, model_ref: str, seed: int,
    progress: bool = True, log: Callable[[str], None] | None = None, confirm: int = 6,
) -> tuple[Path, Draft]:
    """Draft, write and validate a hypothesis; return its path and the draft."""

    draft = draft_hypothesis(model, dataset, progress=progress, log=log, confirm=confirm)
    path = write_draft(draft, out, model_ref=model_ref, n_prompts=len(dataset), seed=seed,
                       corruption=dataset.notes.get("corruption", "abc"),
                       templates=dataset.notes.get("templates"))
    load_hypothesis(path)
    return Path(path), draft
