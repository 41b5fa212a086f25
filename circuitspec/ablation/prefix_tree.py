"""Many keep-sets in one pass that shares what they share: a prefix tree over the layers.

Keep-sets that agree on every layer up to some layer run those layers once; the batch holds
one copy per distinct prefix and a copy splits at the first layer where its keep-sets differ,
carrying its residual from one segment of layers to the next. The functions take the
:class:`~circuitspec.ablation.node.AblationRunner` they serve (``self``), whose caches
and reference runs they read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from circuitspec.bridge.hooks import UNEMBED_IN, keep_or_replace, mlp_out_hook, take_rows, z_hook
from circuitspec.bridge.resume import resumed_at
from circuitspec.patching.types import answer_diff

if TYPE_CHECKING:
    import torch

    from circuitspec.bridge.rows import RowModel

__all__ = ["forward_tree", "replacement_rows", "rows_segment", "signature"]


def replacement_rows(repl: torch.Tensor, sl: slice) -> torch.Tensor:
    """The rows ``sl`` of a per-prompt replacement (a scalar replacement serves every row)."""
    return repl if repl.dim() == 0 else repl[sl]


def signature(self: Any, keep: Any) -> list[tuple[tuple[int, ...], tuple[Any, ...], bool]]:
    """Per layer, what runs normally there: kept heads, their positions, the MLP flag.
    Two keep-sets with equal signatures at a layer have equal masks at that layer."""
    heads: list[list[int]] = [[] for _ in range(self.n_layers)]
    positions: list[list[Any]] = [[] for _ in range(self.n_layers)]
    for L, h in self.all_heads if keep.heads is None else keep.heads:
        heads[L].append(h)
    for (L, h), names in keep.positions:
        positions[L].append((h, names))
    return [(tuple(sorted(heads[L])), tuple(sorted(positions[L])), keep.mlps is None or L in keep.mlps)
            for L in range(self.n_layers)]

def forward_tree(self: Any, group: Any, sl: slice, sigs: Sequence[Any], masks: Sequence[Any], start: int,
                 which: str) -> torch.Tensor:
    """Like :meth:`_forward`, but keep-sets that agree on the layers up to some layer share
    the pass through them: the batch holds one copy per distinct prefix and a copy splits
    at the first layer where its keep-sets differ (a prefix tree over the layers). The
    residual of each copy is carried from one segment of layers to the next."""
    import torch

    tokens = group.tokens[sl]
    n = tokens.shape[0]
    everything = torch.ones((n, tokens.shape[1], self.n_heads), dtype=torch.bool, device=tokens.device)
    nodes: list[list[int]] = [list(range(len(sigs)))]
    resid: torch.Tensor | None = None  # [copies * n, pos, d] entering ``layer``; None: the reference
    layer = start
    while True:
        children: list[list[int]] = []
        parents: list[int] = []
        for p, node in enumerate(nodes):
            split: dict[Any, list[int]] = {}
            for i in node:
                split.setdefault(sigs[i][layer], []).append(i)
            children += split.values()
            parents += [p] * len(split)
        nodes = children
        stop = next((L for L in range(layer + 1, self.n_layers)
                     if any(len({sigs[i][L] for i in node}) > 1 for node in nodes)), self.n_layers)
        n_k = len(nodes)
        if resid is not None:
            resid = resid.reshape(-1, n, *resid.shape[1:])[torch.tensor(parents, device=resid.device)]
            resid = resid.flatten(0, 1)
        elif layer:
            resid = self._reference(group, sl, which)[layer].repeat(n_k, 1, 1)
        last = stop == self.n_layers
        end = group.end[sl].repeat(n_k)
        z_masks = [_stacked([everything if masks[node[0]][0] is None else masks[node[0]][0][L, sl]
                             for node in nodes]) for L in range(layer, stop)]
        mlp_masks = [_mlp_flags([masks[node[0]][1][L] for node in nodes], tokens.device)
                     for L in range(layer, stop)]
        direct = self.rows is not None and resid is not None
        if direct and resid is not None:  # the blocks recomputed directly (bridge/rows.py), no hooks
            out = rows_segment(self.rows, resid, layer, z_masks, mlp_masks, group, sl)
            if last:
                out = out[torch.arange(len(end), device=out.device), end][:, None]
        else:
            hooks: list[tuple[str, Any]] = []
            for L, zm, mm in zip(range(layer, stop), z_masks, mlp_masks, strict=True):
                if zm is not None:
                    hooks.append((z_hook(L), keep_or_replace(zm, replacement_rows(group.z_repl[L], sl))))
                if mm is not None:
                    hooks.append((mlp_out_hook(L), keep_or_replace(mm, replacement_rows(group.mlp_repl[L], sl))))
            if last:
                hooks.append((UNEMBED_IN, take_rows(end)))
            with torch.no_grad(), self.bridge.hooks(fwd_hooks=hooks):
                if resid is None:  # from the tokens
                    out = self.bridge(tokens.repeat(n_k, 1), stop_at_layer=None if last else stop)
                else:
                    with resumed_at(self.bridge, layer):
                        out = self.bridge(resid, start_at_layer=layer, stop_at_layer=None if last else stop)
        self.n_forward += 1
        if self.work is not None:
            self.work.add(n * n_k, tokens.shape[1], stop - layer)
        if not last:
            resid, layer = out, stop
            continue
        if direct:  # final residual rows at END: the answer logits only
            with torch.no_grad():
                diff = self.rows.answer_diff(out[:, 0], group.correct[sl].repeat(n_k),
                                             group.incorrect[sl].repeat(n_k))
            return _spread(diff.reshape(n_k, n).float(), nodes, len(sigs), n)
        logits = out[:, 0] if out.shape[1] == 1 else out[torch.arange(len(end), device=end.device), end]
        diff = answer_diff(logits, group.correct[sl].repeat(n_k),
                           group.incorrect[sl].repeat(n_k)).reshape(n_k, n).float()
        return _spread(diff, nodes, len(sigs), n)


def _spread(diff: torch.Tensor, nodes: Sequence[Sequence[int]], n_keeps: int, n: int) -> torch.Tensor:
    """[copies, n] values -> [keep-sets, n]: each keep-set takes its copy's."""
    import torch

    values = torch.empty((n_keeps, n), device=diff.device)
    for c, node in enumerate(nodes):
        values[list(node)] = diff[c]
    return values


def _stacked(head_masks: Sequence[torch.Tensor]) -> torch.Tensor | None:
    """[copies, n, pos, heads, 1] keep mask of one layer; None where every head runs everywhere."""
    import torch

    if all(bool(hm.all()) for hm in head_masks):
        return None
    return torch.stack(list(head_masks))[..., None]


def _mlp_flags(flags: Sequence[bool], device: Any) -> torch.Tensor | None:
    """[copies, 1, 1, 1] keep flags of one layer's MLP; None where every copy keeps it."""
    import torch

    return None if all(flags) else torch.tensor(list(flags), device=device)[:, None, None, None]


def rows_segment(rm: RowModel, x: torch.Tensor, start: int, z_masks: Sequence[torch.Tensor | None],
                 mlp_masks: Sequence[torch.Tensor | None], group: Any, sl: slice) -> torch.Tensor:
    """The residual [copies * n, pos, d] entering layer ``start`` carried through the next
    ``len(z_masks)`` blocks with :class:`~circuitspec.bridge.rows.RowModel`: every position
    of every copy, each ablated head's z (and each ablated MLP's output) replaced as the
    bridge's hooks would. Equal to the bridge's forward to float rounding (tested)."""
    import torch

    with torch.no_grad():
        return _blocks(rm, x, start, z_masks, mlp_masks, group, sl)


def _blocks(rm: RowModel, x: torch.Tensor, start: int, z_masks: Sequence[torch.Tensor | None],
            mlp_masks: Sequence[torch.Tensor | None], group: Any, sl: slice) -> torch.Tensor:

    for i, (zm, mm) in enumerate(zip(z_masks, mlp_masks, strict=True)):
        layer = start + i
        z = rm.self_attend(layer, *rm.qkv(layer, rm.norm1(layer, x)))
        if zm is not None:
            z = keep_or_replace(zm, replacement_rows(group.z_repl[layer], sl))(z, None)
        attn = rm.attn_write(layer, rm.head_out(layer, z) + rm.layers[layer].b_O)
        mlp = rm.mlp(layer, x if rm.parallel else x + attn)
        if mm is not None:
            mlp = keep_or_replace(mm, replacement_rows(group.mlp_repl[layer], sl))(mlp, None)
        x = x + attn + mlp
    return x
