"""Edge-level evaluation with the blocks recomputed directly (:class:`~circuitspec.bridge.rows.RowModel`).

The definition is :mod:`circuitspec.ablation.edge`'s; this computes it with less work than the
bridge's hooked passes. In a view copy every head's z is its circuit or its ablated z, so no
attention is recomputed there (the head outputs and the MLP only); each wave head attends
from its own q, k and v views (no batch copies per key/value group); a wave pass stops at
its last head's attention. Used where the runner has a RowModel (the architectures it
reproduces exactly); tested against the hooked passes and the slow reference.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from circuitspec.spec.heads import Head

if TYPE_CHECKING:
    import torch

    from circuitspec.ablation.node import AblationRunner

__all__ = ["evaluate_direct"]

_SLOTS = ("q", "k", "v")  # a head's three inputs (circuitspec.ablation.edge.SLOTS)


def evaluate_direct(runner: AblationRunner, plan: Any, waves: list[Any], group: Any, sl: slice,
                     free: Sequence[Head] = ()) -> torch.Tensor:
    """:func:`_evaluate` with the blocks recomputed by the runner's RowModel instead of the
    bridge's hooked forward. The same definition, computed with less work: in a view copy
    every head's z is its circuit or its ablated z, so no attention is recomputed there
    at all; only the wave's own heads attend, each from its own q, k and v views (no batch
    copies per key/value group), and a wave pass stops at its last head's attention."""
    import torch

    rm = runner.rows
    assert rm is not None
    with torch.no_grad():
        ablated = runner._reference(group, sl, "ablated")
        circuit_z = free_circuit_z(runner, group, sl, free)
        for wave in waves:
            views = [v for v in dict.fromkeys(plan.inputs[(r, via)] for r in wave.heads for via in _SLOTS) if v]
            top = max(L for L, _ in wave.heads)
            start = _start(runner, views, min(L for L, _ in wave.heads))
            x = ablated[start][None].repeat(len(views), 1, 1, 1)  # [copies, n, pos, d]
            for layer in range(start, top + 1):
                here = [r for r in wave.heads if r[0] == layer]
                if here:
                    index = {v: i for i, v in enumerate(views)}
                    kept = circuit_z.setdefault(layer, torch.zeros_like(runner.ablated_z(group, sl)[layer]))
                    for r in here:
                        q, k, v = (x[index[view]] if view in index else ablated[layer]
                                   for view in (plan.inputs[(r, via)] for via in _SLOTS))
                        kept[:, :, r[1]] = _head_z(rm, layer, r[1], q, k, v)
                if layer == top:
                    break
                x = _view_block(rm, layer, x, _z_mask(runner, group, sl, views, layer), circuit_z.get(layer),
                                group, sl)
            runner.n_forward += 1
            if runner.work is not None:
                runner.work.add((sl.stop - sl.start) * len(views), group.tokens.shape[1], top + 1 - start)
        start = _start(runner, (plan.logits,), runner.n_layers - 1)
        x = ablated[start][None]
        for layer in range(start, runner.n_layers):
            x = _view_block(rm, layer, x, _z_mask(runner, group, sl, [plan.logits], layer), circuit_z.get(layer),
                            group, sl)
        runner.n_forward += 1
        if runner.work is not None:
            runner.work.add(sl.stop - sl.start, group.tokens.shape[1], runner.n_layers - start)
        n = sl.stop - sl.start
        end = x[0, torch.arange(n, device=x.device), group.end[sl]]
        return rm.answer_diff(end, group.correct[sl], group.incorrect[sl])


def _z_mask(runner: AblationRunner, group: Any, sl: slice, views: Sequence[Any], layer: int) -> torch.Tensor:
    """[copies, n, pos, heads, 1]: where copy c takes a head's circuit z at ``layer`` (its view
    receives that head there), rather than its ablated z."""
    import torch

    n, length = sl.stop - sl.start, group.tokens.shape[1]
    mask = torch.zeros((len(views), n, length, runner.n_heads, 1), dtype=torch.bool, device=group.tokens.device)
    for c, view in enumerate(views):
        for (L, h), names in view:
            if L == layer:
                mask[c, :, :, h, 0] |= _where(group, sl, names, length)
    return mask


def _view_block(rm: Any, layer: int, x: torch.Tensor, mask: torch.Tensor, circuit: torch.Tensor | None,
                group: Any, sl: slice) -> torch.Tensor:
    """One block on view copies ``x`` [copies, n, pos, d]: every head writes its circuit z where
    ``mask`` says, its ablated z elsewhere (no attention computed); the MLP recomputes."""
    import torch

    repl = group.z_repl[layer]
    repl = repl if repl.dim() == 0 else repl[sl]
    if circuit is None:  # no circuit z at this layer (zero ablation's replacement is a scalar)
        circuit = x.new_zeros((*x.shape[1:3], rm.n_heads, rm.d_head))
    z = torch.where(mask, circuit, repl.to(x.dtype))
    z = z.expand(x.shape[0], *z.shape[1:]) if z.shape[0] != x.shape[0] else z
    attn = rm.attn_write(layer, rm.head_out(layer, z) + rm.layers[layer].b_O)
    mlp = rm.mlp(layer, x if rm.parallel else x + attn)
    return x + attn + mlp  # type: ignore[no-any-return]


def _head_z(rm: Any, layer: int, head: int, rq: torch.Tensor, rk: torch.Tensor, rv: torch.Tensor) -> torch.Tensor:
    """One query head's z [n, pos, d_head], its query, key and value read from residuals
    ``rq``, ``rk``, ``rv`` [n, pos, d] (each normed on its own)."""
    group = head // rm.group
    q = rm.q(layer, rm.norm1(layer, rq), [head])
    k = rm.k(layer, rm.norm1(layer, rk), [group])
    return rm.self_attend(layer, q, k, rm.v(layer, rm.norm1(layer, rv), [group]))[:, :, 0]


def free_circuit_z(runner: AblationRunner, group: Any, sl: slice, free: Sequence[Head]) -> dict[int, torch.Tensor]:
    """Per layer, the circuit z of the heads that receive no edge (their z in the fully ablated
    run, which they read on every input); zero for the other heads, filled in later."""
    import torch

    circuit_z: dict[int, torch.Tensor] = {}
    if free:
        ablated = runner.ablated_z(group, sl)
        for L, h in free:
            circuit_z.setdefault(L, torch.zeros_like(ablated[L]))[:, :, h] = ablated[L][:, :, h]
    return circuit_z


def _start(runner: AblationRunner, views: Iterable[Any], first_head: int) -> int:
    """Below the first sender any view reads (and the first head computed), every copy is
    the fully ablated run: the pass resumes there from that run's residual."""
    if not runner.resume:
        return 0
    return min([first_head] + [L for view in views for (L, _), _ in view])


def _where(group: Any, sl: slice, names: tuple[str, ...] | None, length: int) -> torch.Tensor:
    import torch

    if names is None:
        return torch.ones((), dtype=torch.bool, device=group.tokens.device)
    mask = torch.zeros((sl.stop - sl.start, length), dtype=torch.bool, device=group.tokens.device)
    for name in names:
        mask |= group.pos_masks[name][sl]
    return mask
