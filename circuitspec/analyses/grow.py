"""Edge discovery: grow a hypothesis' wiring edge by edge on the exact edge-level engine.

Start from groups of heads (``suggest``'s draft, or a hypothesis file's nodes) and no
edges (or given ones). A *candidate* edge runs from a group into the logits, or into a
group's q, k or v at a named position, where the receiving group is on a path to the
logits (an edge into any other group cannot change the logits). Forward selection, as
ACDC does, but adding rather than removing, with the exact edge-level evaluation of
:mod:`circuitspec.ablation.edge`:

1. screen every candidate by the path-patching effect of its sender group into its
   receiver (the fast engine's batched sweeps, cached); only candidates whose |effect|
   clears ``min_effect`` (default 0.05, verify's default edge bar: an edge below it would
   be refuted by construction) stay, the ``n_exact`` largest of them (no engine: all);
2. evaluate each kept candidate exactly: edge-level faithfulness F(C)/F(M) of the
   current edges plus it; add the one that brings F closest to ``band``. If none gains
   more than ``tolerance``, each shortlisted edge whose sender has no inputs yet is tried
   with every edge (clearing the bar) into the sender and its upstream groups (a chain:
   an S-inhibition head helps only with the induction signal it carries), the upstream
   edges that change F by less than ``tolerance`` dropped again (``chains``);
3. stop when F lies in the band, when no kept candidate gains more than ``tolerance``,
   after ``max_edges`` edges, or when ``max_seconds`` have passed.

Then prune, for minimality: each edge (last added first), then each head, is removed
when that changes F by less than ``tolerance``, F stays in the band if it was, and (a
head) its group's edges still clear the bar; groups no edge connects to the logits are
dropped, and so are edges into them.

Positions: with ``at_positions`` (the ``circuit_positions`` scope) an edge carries
signal at its ``at`` alone, and each position is its own candidate. Otherwise (the
default scope, as ``verify`` evaluates it) an edge carries signal at every position:
``at`` is the position of largest screened effect, where ``verify`` path-patches it.
MLPs are on every path of the edge-level evaluation, so they are no senders here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from circuitspec.ablation.edge import Wire, edge_level_logit_diff
from circuitspec.analyses.grid import head_label
from circuitspec.patching.types import LOGITS, Receiver, Sender
from circuitspec.spec.heads import Head

if TYPE_CHECKING:
    from circuitspec.ablation.node import AblationRunner

__all__ = ["GrowEdge", "GrowResult", "GrowStep", "candidates", "grow_edges", "prune"]

Groups = Mapping[str, tuple[str, Sequence[Head]]]
POSITIONS = ("END", "S2", "S1+1", "IO", "S1")
VIAS = ("q", "k", "v")


@dataclass(frozen=True)
class GrowEdge:
    """One edge between groups, as a hypothesis file writes it."""

    sender: str
    receiver: str  # a group, or "logits"
    via: str | None = None
    at: str = "END"

    @property
    def name(self) -> str:
        target = self.receiver if self.via is None else f"{self.receiver}.{self.via}"
        return f"{self.sender}->{target}@{self.at}"

    def as_dict(self) -> dict[str, str]:
        out = {"from": self.sender, "to": self.receiver}
        if self.via is not None:
            out["via"] = self.via
        return {**out, "at": self.at}


@dataclass(frozen=True)
class GrowStep:
    """One edge added: faithfulness after it, its gain, its screened effect, candidates tried."""

    edge: GrowEdge
    faithfulness: float
    gain: float
    screened: float | None
    tried: int
    upstream: tuple[GrowEdge, ...] = ()  # edges into the sender added with it (a chain)


@dataclass
class GrowResult:
    """The grown circuit and the evidence for it."""

    groups: dict[str, tuple[str, list[Head]]]
    edges: list[GrowEdge]
    start: float  # F with no edges
    seeded: tuple[int, float] | None = None  # (n, F) with the n edges growth started from
    steps: list[GrowStep] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    faithfulness: float = 0.0
    stop: str = ""
    evaluations: int = 0
    seconds: float = 0.0
    # Each final edge's path-patching effect with the final groups (no screen: empty), and F at
    # node level of the final groups (every edge among their heads): F can reach the band at
    # edge level by leaving out an edge that works against the task, which node level shows.
    effects: dict[GrowEdge, float] = field(default_factory=dict)
    node_level: float | None = None


class _Evaluator:
    """Edge-level faithfulness of (groups, edges), memoised on the wires."""

    def __init__(self, runner: AblationRunner, at_positions: bool) -> None:
        self.runner = runner
        self.at_positions = at_positions
        self.fm = float(runner.clean.double().mean())
        self.memo: dict[frozenset[Wire], float] = {}

    def wires(self, groups: Groups, edges: Sequence[GrowEdge]) -> list[Wire]:
        out = []
        for e in edges:
            senders = tuple(sorted(groups[e.sender][1])) if e.sender in groups else ()
            if not senders:
                continue
            if e.receiver == "logits":
                out.append(Wire(senders))
                continue
            receivers = tuple(sorted(groups[e.receiver][1])) if e.receiver in groups else ()
            if receivers:
                out.append(Wire(senders, receivers, e.via, (e.at,) if self.at_positions else None))  # type: ignore[arg-type]
        return out

    def __call__(self, groups: Groups, edges: Sequence[GrowEdge]) -> float:
        wires = self.wires(groups, edges)
        key = frozenset(wires)
        if key not in self.memo:
            self.memo[key] = float(edge_level_logit_diff(self.runner, wires).double().mean()) / self.fm
        return self.memo[key]


class _Screen:
    """Path-patching effect of a candidate's sender group into its receiver, cached on the
    edge and both groups' heads (pruning a head changes the effect)."""

    def __init__(self, engine: Any, semantics: str = "path", freeze_mlps: bool = False) -> None:
        self.engine = engine
        self.how = {"semantics": semantics, "freeze_mlps": freeze_mlps}
        clean, corrupt = engine.baselines()
        self.clean, self.gap = float(clean.double().mean()), float((clean - corrupt).double().mean())
        self.cache: dict[tuple[GrowEdge, tuple[Head, ...], tuple[Head, ...]], float] = {}

    @staticmethod
    def _key(groups: Groups, c: GrowEdge) -> tuple[GrowEdge, tuple[Head, ...], tuple[Head, ...]]:
        return c, tuple(groups[c.sender][1]), () if c.receiver == "logits" else tuple(groups[c.receiver][1])

    def __call__(self, groups: Groups, candidates: Sequence[GrowEdge]) -> dict[GrowEdge, float]:
        slots: dict[tuple[str, str | None, str], list[GrowEdge]] = {}
        for c in candidates:
            if self._key(groups, c) not in self.cache:
                slots.setdefault((c.receiver, c.via, c.at), []).append(c)
        for (r, via, at), todo in slots.items():
            receiver = LOGITS if r == "logits" else Receiver(tuple(groups[r][1]), via, at)  # type: ignore[arg-type]
            top = max(receiver.layers, default=10**9)
            senders = [Sender(tuple(h for h in groups[c.sender][1] if h[0] < top)) for c in todo]
            sweep = getattr(self.engine, "sweep", None)
            patched = (sweep(receiver, senders, **self.how) if sweep is not None
                       else [self.engine.patch(s, receiver, **self.how) for s in senders])
            for c, p in zip(todo, patched, strict=True):
                self.cache[self._key(groups, c)] = (float(p.double().mean()) - self.clean) / self.gap
        return {c: self.cache[self._key(groups, c)] for c in candidates}


def _distance(f: float, band: tuple[float, float]) -> float:
    return max(band[0] - f, f - band[1], 0.0)


def _needed(edges: Sequence[GrowEdge]) -> set[str]:
    """Groups on a path to the logits."""
    needed = {e.sender for e in edges if e.receiver == "logits"}
    grew = True
    while grew:
        more = {e.sender for e in edges if e.receiver in needed} - needed
        needed |= more
        grew = bool(more)
    return needed


def candidates(groups: Groups, edges: Sequence[GrowEdge], positions: Sequence[str],
               at_positions: bool) -> list[GrowEdge]:
    """Every edge that could change F: into the logits, or into a later group on a path to them."""
    have = {(e.sender, e.receiver, e.via, e.at if at_positions else None) for e in edges}
    needed = _needed(edges)
    out = []
    for s, (_, sent) in groups.items():
        if not sent:
            continue
        out.append(GrowEdge(s, "logits"))
        for r in sorted(needed):
            # As a hypothesis file requires: every receiver after every sender, no self edges.
            if r == s or max(a[0] for a in sent) >= min(b[0] for b in groups[r][1]):
                continue
            out += [GrowEdge(s, r, via, at) for via in VIAS for at in positions]
    return [c for c in out if (c.sender, c.receiver, c.via, c.at if at_positions else None) not in have]


def _shortlist(found: list[GrowEdge], effects: dict[GrowEdge, float] | None, n_exact: int,
               at_positions: bool) -> list[GrowEdge]:
    """The candidates to evaluate exactly: one position per (sender, receiver, via) unless
    positions matter, the largest screened |effect| first, ``n_exact`` of them."""
    if effects is None:
        ranked = list(found)
    else:
        ranked = sorted(found, key=lambda c: -abs(effects[c]))
    if not at_positions:
        seen: dict[tuple[str, str, str | None], GrowEdge] = {}
        for c in ranked:
            seen.setdefault((c.sender, c.receiver, c.via), c)
        ranked = list(seen.values())
    return ranked if effects is None else ranked[:n_exact]


def grow_edges(
    runner: AblationRunner,
    groups: Groups,
    *,
    engine: Any = None,
    band: tuple[float, float] = (0.8, 1.2),
    tolerance: float = 0.01,
    max_edges: int = 20,
    n_exact: int = 3,
    positions: Sequence[str] = POSITIONS,
    at_positions: bool = False,
    prune_after: bool = True,
    chains: bool = True,
    max_seconds: float | None = None,
    min_effect: float = 0.05,
    initial: Sequence[GrowEdge] = (),
    semantics: str = "path",
    freeze_mlps: bool = False,
    log: Callable[[str], None] | None = None,
) -> GrowResult:
    """Grow edges among ``groups`` (name -> (role, heads)) by forward selection, then prune.

    ``engine``: a path-patching engine for the screen (``None``: no screen, every
    candidate evaluated exactly; then no effect is known, so ``min_effect`` filters nothing and
    ``effects`` stays empty). ``semantics``, ``freeze_mlps``: how the screen path-patches, as the
    hypothesis' verify will. ``initial``: edges to start from (default none), pruned like the rest.
    See the module docstring.
    """
    clock = time.perf_counter()
    ev = _Evaluator(runner, at_positions)
    screen = None if engine is None else _Screen(engine, semantics, freeze_mlps)
    positions = [p for p in positions if p in runner.dataset.positions]
    work = {name: (role, list(heads)) for name, (role, heads) in groups.items()}
    edges = [e for e in initial if e.sender in work and e.receiver in (*work, "logits")]
    result = GrowResult(work, edges, start=ev(work, []))
    say = log or (lambda _: None)
    say(f"grow: F with no edges {result.start:.3f}")
    f = ev(work, edges)
    if edges:
        result.seeded = (len(edges), f)
        say(f"grow: F with the {len(edges)} starting edges {f:.3f}")

    def out_of_time() -> bool:
        return max_seconds is not None and time.perf_counter() - clock > max_seconds

    result.stop = "max_edges"
    while len(edges) < max_edges:
        if band[0] <= f <= band[1]:
            result.stop = "in band"
            break
        if out_of_time():
            result.stop = "time budget"
            break
        found = candidates(work, edges, positions, at_positions)
        effects = None if screen is None else screen(work, found)
        if effects is not None:
            found = [c for c in found if abs(effects[c]) >= min_effect]
        shortlist = _shortlist(found, effects, n_exact, at_positions)
        bundles: list[tuple[GrowEdge, list[GrowEdge]]] = [(c, []) for c in shortlist]
        scored = [(_distance(f, band) - _distance(ev(work, edges + [c]), band), i) for i, c in enumerate(shortlist)]
        if chains and (not scored or max(g for g, _ in scored) <= tolerance):
            # Stalled: a sender whose own inputs are all ablated may help only with them.
            bundles = [(c, _upstream(work, c.sender, positions, at_positions, screen, min_effect)) for c in shortlist
                       if not any(e.receiver == c.sender for e in edges)]
            bundles = [b for b in bundles if b[1]]
            scored = [(_distance(f, band) - _distance(ev(work, edges + [c, *up]), band), i)
                      for i, (c, up) in enumerate(bundles)]
        if not scored or max(g for g, _ in scored) <= tolerance:
            result.stop = "no edge gains more than the tolerance"
            break
        gain, i = max(scored)
        best, upstream = bundles[i]
        edges.append(best)
        edges += upstream
        f = ev(work, edges)
        for e in reversed(upstream):  # keep only the upstream edges the new edge needs
            f_new = ev(work, [x for x in edges if x != e])
            if abs(f_new - f) < tolerance:
                edges.remove(e)
                upstream.remove(e)
                f = f_new
        result.steps.append(GrowStep(best, f, gain, None if effects is None else effects[best], len(bundles),
                                     tuple(upstream)))
        say(f"grow: +{best.name} (+{len(upstream)} upstream) F {f:.3f} (gain {gain:+.3f}, {len(bundles)} evaluated)")
    # Out of time or told not to: drop only what cannot matter (a negative tolerance).
    tol = tolerance if prune_after and not out_of_time() else -1.0
    def clears(g: Groups, es: Sequence[GrowEdge]) -> bool:  # each edge's effect still clears the bar
        return screen is None or all(abs(v) >= min_effect for v in screen(g, es).values())

    f = prune(ev, work, edges, band, tol, result.pruned, out_of_time, clears)
    result.faithfulness = f
    if screen is not None:
        result.effects = screen(work, edges)
    kept = [h for _, heads in work.values() for h in heads]
    result.node_level = float(runner.logit_diff(kept).double().mean()) / ev.fm
    result.evaluations = len(ev.memo)
    result.seconds = round(time.perf_counter() - clock, 1)
    return result


def _upstream(groups: Groups, sender: str, positions: Sequence[str], at_positions: bool,
              screen: _Screen | None, min_effect: float = 0.0) -> list[GrowEdge]:
    """Every edge into ``sender`` and, recursively, into the groups feeding it: q, k and v from
    every earlier group, at each position (or, when positions do not matter, at the one of
    largest screened effect), whose screened effect clears ``min_effect``."""
    out: list[GrowEdge] = []
    todo, seen = [sender], {sender}
    while todo:
        r = todo.pop()
        first = min(b[0] for b in groups[r][1])
        for t, (_, sent) in groups.items():
            if t == r or not sent or max(a[0] for a in sent) >= first:
                continue
            for via in VIAS:
                options = [GrowEdge(t, r, via, at) for at in positions]
                if screen is not None:
                    effects = screen(groups, options)
                    options = [o for o in options if abs(effects[o]) >= min_effect]
                if at_positions or not options:
                    out += options
                    continue
                out.append(options[0] if screen is None else max(options, key=lambda o: abs(effects[o])))
            if t not in seen and any(e.sender == t and e.receiver == r for e in out):
                seen.add(t)  # only a group that feeds the chain has inputs worth adding
                todo.append(t)
    return out


def prune(ev: Callable[[Groups, Sequence[GrowEdge]], float], groups: dict[str, tuple[str, list[Head]]],
          edges: list[GrowEdge], band: tuple[float, float], tolerance: float, notes: list[str],
          out_of_time: Callable[[], bool] = lambda: False,
          clears: Callable[[Groups, Sequence[GrowEdge]], bool] = lambda g, es: True) -> float:
    """Drop edges, then heads, whose removal changes F by less than ``tolerance`` (keeping F in
    the band if it was; a head only if each edge of its group still ``clears`` the edge bar,
    since a head's removal changes its edges' effects), then groups and edges off every path
    to the logits; edits in place,
    appends a reason per removal to ``notes`` and returns the final F. A negative
    ``tolerance`` tries no removals that could change F."""
    f = ev(groups, edges)

    def keeps(f_new: float) -> bool:
        in_band = band[0] <= f <= band[1]
        return abs(f_new - f) < tolerance and (not in_band or band[0] <= f_new <= band[1])

    for e in list(reversed(edges)) if tolerance >= 0 else []:
        if out_of_time():
            break
        trial = [x for x in edges if x != e]
        f_new = ev(groups, trial)
        if keeps(f_new):
            notes.append(f"edge {e.name}: F {f:.3f} -> {f_new:.3f} without it")
            edges.remove(e)
            f = f_new
    for name in list(groups) if tolerance >= 0 else []:
        role, heads = groups[name]
        for h in list(heads):
            if out_of_time() or name not in _needed(edges) or len(heads) == 1:
                break
            fewer = {**groups, name: (role, [x for x in heads if x != h])}
            f_new = ev(fewer, edges)
            if keeps(f_new) and clears(fewer, [e for e in edges if name in (e.sender, e.receiver)]):
                notes.append(f"head {head_label(*h)} of {name}: F {f:.3f} -> {f_new:.3f} without it")
                heads.remove(h)
                f = f_new
    needed = _needed(edges)
    for name in [g for g in groups if g not in needed]:
        notes.append(f"group {name} ({', '.join(head_label(*h) for h in groups[name][1])}): "
                     "no edge connects it to the logits")
        del groups[name]
    for e in [e for e in edges if e.receiver != "logits" and e.receiver not in needed]:
        notes.append(f"edge {e.name}: its receiver is off every path to the logits")
        edges.remove(e)
    return ev(groups, edges)
