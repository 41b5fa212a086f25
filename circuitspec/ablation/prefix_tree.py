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

__all__ = ["forward_tree", "replacement_rows", "signature"]


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
        hooks: list[tuple[str, Any]] = []
        for L in range(layer, stop):
            firsts = [masks[node[0]][0] for node in nodes]
            head_masks = [everything if m is None else m[L, sl] for m in firsts]
            if not all(bool(hm.all()) for hm in head_masks):
                stacked = torch.stack(head_masks)[..., None]
                hooks.append((z_hook(L), keep_or_replace(stacked, replacement_rows(group.z_repl[L], sl))))
            mlp_flags = [masks[node[0]][1][L] for node in nodes]
            if not all(mlp_flags):
                keep_mlp = torch.tensor(mlp_flags, device=tokens.device)[:, None, None, None]
                hooks.append((mlp_out_hook(L), keep_or_replace(keep_mlp, replacement_rows(group.mlp_repl[L], sl))))
        last = stop == self.n_layers
        end = group.end[sl].repeat(n_k)
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
        logits = out[:, 0] if out.shape[1] == 1 else out[torch.arange(len(end)), end]
        diff = answer_diff(logits, group.correct[sl].repeat(n_k),
                           group.incorrect[sl].repeat(n_k)).reshape(n_k, n).float()
        values = torch.empty((len(sigs), n), device=diff.device)
        for c, node in enumerate(nodes):
            values[node] = diff[c]
        return values
