"""Edge-level circuit evaluation: only the hypothesis' edges carry clean signal.

Node-level ablation (:mod:`circuitspec.ablation.node`) keeps the circuit's heads and ablates
the rest, so every circuit head still reads every other circuit head. Edge-level
evaluation keeps only the *edges* the hypothesis names, in the spirit of ACDC and
auto-circuit edge patching: a head's residual input is embeddings + upstream head
outputs + MLP outputs, and every head output that does not travel along a circuit edge
arrives ablated.

Definition. A head's signal is its ``hook_z`` (its output is ``z @ W_O``). An edge
(:class:`Wire`) runs from sender heads to receiver heads' ``q``, ``k`` or ``v`` input,
optionally at named positions (the receiver's positions), or from sender heads to the
logits. For an edge set E, on each clean prompt:

1. Each head has an *ablated* z, exactly as in node-level ablation (``mean`` over the ABC
   corruption distribution per template position, ``resample`` from the paired corrupted
   prompt, or ``zero``), and a *circuit* z, defined in 3.
2. Each input slot (head r, s in q/k/v) reads its own copy of the residual stream, its
   *view*: at position p, the residual of a run in which every head h < r writes its
   circuit z if (h -> r.s) is in E at p and its ablated z otherwise. Embeddings and
   biases are clean; MLPs and norms recompute on the view, position by position. An MLP
   is thus part of every path: an edge in E reaches r directly and through every MLP in
   between, an edge outside E reaches it ablated along both.
3. r's circuit z is its attention computed on its three views: queries from the q view,
   keys from the k view, values from the v view, each normed on its own copy.
4. The logits read the view of the ``-> logits`` edges at END; the metric is
   logit(correct) - logit(incorrect) there, per prompt.

Edges carry the sender's value *in the circuit run* (3), as in ACDC and auto-circuit,
not its clean-run value: a clean-run value would let a sender pass on information that
its own, ablated, inputs no longer give it, and the circuit's upstream structure would
not matter. Consequences, each tested:

- E = every edge of the complete graph: every view is the clean residual, F = F(M).
- E = {}: the logits' view has every head ablated, F = F(empty) of node-level ablation.
- E = every edge among the circuit's heads (all positions, q, k and v, and every
  circuit head -> logits): F = node-level F(C).

Positions: an edge carries signal at its receiver positions only (``positions``), or at
every position (``None``). Heads write only their own position and a view recomputes
no attention, so a logits edge matters at END alone.

Grouped-query attention: a key/value input is shared by the query heads of a group. Each
circuit query head gets keys and values from *its own* k and v views, so an edge into one
head's k reaches that head alone, as in path patching; when the heads of one group need
different views, the layer runs in several batch copies and each head takes its z from
its copy. (The alternative, the key/value head as the receiver, would feed an edge into
every query head of the group; the hypothesis names query heads.)

Cost: heads whose circuit z is needed (senders on a path to the logits) are computed in
waves: a head joins the pass after the last one holding a sender it reads. A head that
receives no edge reads the fully ablated run on every input, so its circuit z is that
run's, cached with it: it needs no pass. One forward pass per wave, up to its last layer,
the prompts stacked once per distinct view that receives an edge (an input that receives
none reads the fully ablated run's cached residual); then one pass for the logits. (The IOI circuit
of SmolLM2 takes three waves: induction, S-inhibition, name movers.) Below the
first sender any of a pass's views reads, every copy is the fully ablated run, so the pass
resumes there from that run's cached residual (:mod:`circuitspec.bridge.resume`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from circuitspec.ablation.edge_direct import _start, _z_mask, evaluate_direct, free_circuit_z
from circuitspec.bridge.hooks import UNEMBED_IN, take_rows
from circuitspec.bridge.resume import resumed_at
from circuitspec.patching.types import answer_diff
from circuitspec.spec.heads import Head

if TYPE_CHECKING:
    import torch
    from jaxtyping import Float

    from circuitspec.ablation.node import AblationRunner
    from circuitspec.spec.circuit import Circuit

__all__ = ["Wire", "complete_wires", "edge_level_logit_diff", "wires_from_circuit"]

Via = Literal["q", "k", "v"]
SLOTS: tuple[Via, ...] = ("q", "k", "v")
# What a view receives: (sender head, its positions or None for all).
_Source = tuple[Head, "tuple[str, ...] | None"]
_View = frozenset[_Source]


@dataclass(frozen=True)
class Wire:
    """Sender heads -> receiver heads' ``via`` input at ``positions``; no receivers: the logits.

    Every sender reaches every receiver in a later layer; pairs in the same or an earlier
    layer are skipped (attention reads the residual before its own layer writes).
    """

    senders: tuple[Head, ...]
    receivers: tuple[Head, ...] = ()
    via: Via | None = None
    positions: tuple[str, ...] | None = None  # None: every position

    def __post_init__(self) -> None:
        if bool(self.receivers) != (self.via is not None):
            raise ValueError("a wire into heads names via (q, k or v); a wire into the logits does not")
        if self.via is not None and self.via not in SLOTS:
            raise ValueError(f"unknown via {self.via!r}; use q, k or v")


def wires_from_circuit(circuit: Circuit, *, at_positions: bool = False) -> list[Wire]:
    """The hypothesis' edges as wires between its groups' heads (MLP members are on every path).

    ``at_positions``: an edge carries signal only at its ``at`` position (logits edges read
    END in any case); otherwise at every position.
    """
    wires = []
    for edge in circuit.edges:
        senders = tuple(circuit.nodes[edge.sender].heads)
        if edge.receiver == "logits":
            wires.append(Wire(senders))
        else:
            wires.append(Wire(senders, tuple(circuit.nodes[edge.receiver].heads), edge.via,  # type: ignore[arg-type]
                              (edge.at,) if at_positions else None))
    return wires


def complete_wires(heads: Iterable[Head]) -> list[Wire]:
    """Every edge among ``heads``: each into each later one's q, k and v, and each into the logits.

    With every head of the model this is the complete graph (F = F(M)); with a circuit's
    heads, edge-level evaluation equals node-level ablation of that circuit.
    """
    group = tuple(sorted({(int(L), int(h)) for L, h in heads}))
    return [Wire(group, group, via) for via in SLOTS] + [Wire(group)]


@dataclass(frozen=True)
class _Plan:
    """Which heads need a circuit z, and the view each of their inputs (and the logits) reads."""

    needed: tuple[Head, ...]  # in layer order
    inputs: dict[tuple[Head, Via], _View]
    logits: _View


def _plan(wires: Sequence[Wire], all_heads: frozenset[Head], positions: Iterable[str]) -> _Plan:
    into: dict[tuple[Head, Via], set[_Source]] = {}
    logits: set[_Source] = set()
    for wire in wires:
        unknown = (set(wire.senders) | set(wire.receivers)) - all_heads
        if unknown:
            raise ValueError(f"heads {sorted(unknown)} do not exist in this model")
        missing = set(wire.positions or ()) - set(positions)
        if missing:
            raise ValueError(f"unknown positions {sorted(missing)}; the dataset has {', '.join(positions)}")
        for s in wire.senders:
            if not wire.receivers:
                logits.add((s, wire.positions))
            for r in wire.receivers:
                if s[0] < r[0]:
                    into.setdefault((r, wire.via), set()).add((s, wire.positions))  # type: ignore[arg-type]
    # Only heads on a path to the logits need their circuit z: close backwards from there.
    needed = {s for s, _ in logits}
    todo = list(needed)
    while todo:
        r = todo.pop()
        for via in SLOTS:
            for s, _ in into.get((r, via), ()):
                if s not in needed:
                    needed.add(s)
                    todo.append(s)
    inputs = {(r, via): frozenset(into.get((r, via), ())) for r in needed for via in SLOTS}
    return _Plan(tuple(sorted(needed)), inputs, frozenset(logits))


def edge_level_logit_diff(runner: AblationRunner, wires: Sequence[Wire]) -> Float[torch.Tensor, " prompt"]:
    """Per-prompt logit difference of the model with only ``wires`` carrying signal.

    Uses ``runner``'s prompts and ablated values (its ablation kind); see the module
    docstring for the definition.
    """
    import torch

    plan = _plan(wires, runner.all_heads, runner.dataset.positions)
    order, free = _waves(plan)
    waves = [_Wave.of(plan, heads, runner) for heads in order]
    copies = max([1] + [len(w.views) for w in waves])
    out = torch.zeros(len(runner.dataset), device="cpu")  # results leave the device here
    for group in runner._groups:
        n, length = group.tokens.shape
        step = max(1, runner.max_tokens // (length * copies))
        for s in range(0, n, step):
            sl = slice(s, min(n, s + step))
            evaluate = _evaluate if runner.rows is None else evaluate_direct
            out[group.index[sl]] = evaluate(runner, plan, waves, group, sl, free).cpu().float()
    return out


def _waves(plan: _Plan) -> tuple[list[list[Head]], list[Head]]:
    """Needed heads in passes: a head joins the pass after the last one holding a sender it reads.
    A head that receives no edge reads the fully ablated residual on all three inputs, so its
    circuit z is its z in the fully ablated run: it needs no pass (returned apart, ``free``)."""
    wave: dict[Head, int] = {}
    for r in plan.needed:  # layer order, so every sender is placed before its receivers
        senders = [s for via in SLOTS for s, _ in plan.inputs[(r, via)]]
        wave[r] = 1 + max(wave[s] for s in senders) if senders else -1
    passes = [[r for r in plan.needed if wave[r] == w] for w in range(1 + max(wave.values(), default=-1))]
    return passes, [r for r in plan.needed if wave[r] == -1]


@dataclass(frozen=True)
class _Wave:
    """One pass: its heads, the distinct views they read (one batch copy each), and per head
    the copy its attention runs in; per (layer, k/v group) the (k, v) views of each copy."""

    heads: tuple[Head, ...]
    views: tuple[_View, ...]
    copy_of: dict[Head, int]
    pairs: dict[tuple[int, int], list[tuple[_View, _View]]]

    @staticmethod
    def of(plan: _Plan, heads: list[Head], runner: AblationRunner) -> _Wave:
        # An empty view is the fully ablated run, whose residual is cached: it needs no copy.
        views = [v for v in dict.fromkeys(plan.inputs[(r, via)] for r in heads for via in SLOTS) if v]
        group_size = runner.n_heads // _n_kv(runner)
        pairs: dict[tuple[int, int], list[tuple[_View, _View]]] = {}
        copy_of: dict[Head, int] = {}
        for r in heads:
            pair = (plan.inputs[(r, "k")], plan.inputs[(r, "v")])
            options = pairs.setdefault((r[0], r[1] // group_size), [])
            if pair not in options:
                options.append(pair)
            copy_of[r] = options.index(pair)
        n_copies = max([len(views)] + [len(p) for p in pairs.values()])
        views += [frozenset()] * (n_copies - len(views))
        return _Wave(tuple(heads), tuple(views), copy_of, pairs)


def _n_kv(runner: AblationRunner) -> int:
    return int(getattr(runner.bridge.cfg, "n_key_value_heads", None) or runner.n_heads)


def _evaluate(runner: AblationRunner, plan: _Plan, waves: list[_Wave], group: Any, sl: slice,
              free: Sequence[Head] = ()) -> torch.Tensor:
    import torch

    tokens = group.tokens[sl]
    n = tokens.shape[0]
    circuit_z = free_circuit_z(runner, group, sl, free)
    for wave in waves:
        top = max(L for L, _ in wave.heads)
        start = _start(runner, wave.views, min(L for L, _ in wave.heads))
        hooks = _z_hooks(runner, group, sl, list(wave.views), circuit_z, top + 1, wave, start)
        ablated = runner._reference(group, sl, "ablated")
        for layer in sorted({L for L, _ in wave.heads}):
            hooks += _input_hooks(plan, wave, layer, n, ablated[layer])
        _run(runner, group, sl, len(wave.views), hooks, start, top + 1)

    start = _start(runner, (plan.logits,), runner.n_layers - 1)
    hooks = _z_hooks(runner, group, sl, [plan.logits], circuit_z, runner.n_layers, None, start)
    end = group.end[sl]
    hooks.append((UNEMBED_IN, take_rows(end)))  # only END reaches the unembedding
    logits = _run(runner, group, sl, 1, hooks, start, None)
    logits = logits[:, 0] if logits.shape[1] == 1 else logits[torch.arange(n, device=end.device), end]
    return answer_diff(logits, group.correct[sl], group.incorrect[sl])


def _run(runner: AblationRunner, group: Any, sl: slice, copies: int, hooks: list[tuple[str, Any]],
         start: int, stop: int | None) -> torch.Tensor:
    """One pass of ``group[sl]`` stacked ``copies`` times, from layer ``start`` (to ``stop``)."""
    import torch

    # The reference run is cached on first use: before this pass's hooks go on.
    resid = runner._reference(group, sl, "ablated")[start] if start else None
    with torch.no_grad(), runner.bridge.hooks(fwd_hooks=hooks):
        if resid is not None:
            with resumed_at(runner.bridge, start):
                out = runner.bridge(resid.repeat(copies, 1, 1), start_at_layer=start, stop_at_layer=stop)
        else:
            out = runner.bridge(group.tokens[sl].repeat(copies, 1), stop_at_layer=stop)
    runner.n_forward += 1
    if runner.work is not None:
        tokens = group.tokens[sl]
        runner.work.add(tokens.shape[0] * copies, tokens.shape[1], (stop or runner.n_layers) - start)
    return out


def _input_hooks(plan: _Plan, wave: _Wave, layer: int, n: int,
                 ablated: torch.Tensor) -> list[tuple[str, Any]]:
    """At ``layer``: each wave head's q/k/v input taken from its views' copies; a view with
    no copy (the empty view) is the fully ablated run's residual entering ``layer``."""
    c = len(wave.views)
    index = {v: i for i, v in reversed(list(enumerate(wave.views)))}  # first copy of each view
    heads = [r for r in wave.heads if r[0] == layer]

    def source(view: torch.Tensor, v: _View, head: int) -> torch.Tensor:
        return view[index[v], :, :, head] if v in index else ablated.to(view.dtype)

    def gather_q(x: torch.Tensor, hook: Any) -> torch.Tensor:
        view = x.reshape(c, n, *x.shape[1:])
        new = view.clone()
        for r in heads:
            new[wave.copy_of[r], :, :, r[1]] = source(view, plan.inputs[(r, "q")], r[1])
        return new.reshape(x.shape)

    def gather_kv(slot: int) -> Any:
        def hook(x: torch.Tensor, hook: Any) -> torch.Tensor:
            view = x.reshape(c, n, *x.shape[1:])
            new = view.clone()
            for (L, g), options in wave.pairs.items():
                for a, pair in enumerate(options):
                    if L == layer:
                        new[a, :, :, g] = source(view, pair[slot], g)
            return new.reshape(x.shape)

        return hook

    return [(f"blocks.{layer}.hook_q_input", gather_q), (f"blocks.{layer}.hook_k_input", gather_kv(0)),
            (f"blocks.{layer}.hook_v_input", gather_kv(1))]


def _z_hooks(runner: AblationRunner, group: Any, sl: slice, views: list[_View],
             circuit_z: dict[int, torch.Tensor], below: int, wave: _Wave | None = None,
             start: int = 0) -> list[tuple[str, Any]]:
    """hook_z of the layers from ``start`` under ``below``: per batch copy, circuit z where
    its view receives, ablated z elsewhere; a wave's heads have their circuit z stored first."""
    hooks: list[tuple[str, Any]] = []
    for layer in range(start, below):
        mask = _z_mask(runner, group, sl, views, layer)
        repl = group.z_repl[layer]
        repl = repl if repl.dim() == 0 else repl[sl]
        store = {r: wave.copy_of[r] for r in wave.heads if r[0] == layer} if wave else {}
        hooks.append((f"blocks.{layer}.attn.hook_z", _mix(mask, circuit_z, layer, repl, store)))
    return hooks


def _mix(mask: torch.Tensor, circuit_z: dict[int, torch.Tensor], layer: int, repl: torch.Tensor,
         store: dict[Head, int]) -> Any:
    """A hook_z hook: first store the circuit z of the heads in ``store`` (head -> its copy),
    then copy c of the batch takes circuit z where ``mask[c]``, ``repl`` elsewhere."""
    import torch

    def hook(x: torch.Tensor, hook: Any) -> torch.Tensor:
        view = x.reshape(mask.shape[0], -1, *x.shape[1:])
        if store:
            kept = circuit_z.setdefault(layer, torch.zeros_like(view[0]))
            for (_, h), c in store.items():
                kept[:, :, h] = view[c, :, :, h]
        current = circuit_z.get(layer)
        return torch.where(mask, view if current is None else current, repl.to(x.dtype)).reshape(x.shape)

    return hook
