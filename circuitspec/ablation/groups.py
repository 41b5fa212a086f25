"""The ablation runner's prompts in length groups, with the cached replacements of each.

Functions of the :class:`~circuitspec.ablation.node.AblationRunner` they serve (``self``):
its model, dataset, ablation kind, mean pool and token budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from circuitspec.ablation.replacement import replacements
from circuitspec.bridge.hooks import capture_into, mlp_out_hook, z_hook

if TYPE_CHECKING:
    import torch

__all__ = ["Group", "prepare_groups"]


@dataclass
class Group:
    """One length group of prompts and everything an ablated run of it needs."""
    index: torch.Tensor  # [n] prompt indices into the dataset
    tokens: torch.Tensor  # [n, pos] clean tokens
    end: torch.Tensor  # [n]
    correct: torch.Tensor  # [n]
    incorrect: torch.Tensor  # [n]
    z_repl: list[torch.Tensor]  # per layer [n, pos, heads, d_head] (or a broadcastable 0)
    mlp_repl: list[torch.Tensor]  # per layer [n, pos, d_model] (or a broadcastable 0)
    pos_masks: dict[str, torch.Tensor]  # position name -> [n, pos] bool


def _capture(self: Any, tokens: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """z of every head and every MLP output on ``tokens``, with the hooks removed after."""
    import torch

    zs: dict[int, torch.Tensor] = {}
    mlps: dict[int, torch.Tensor] = {}
    hooks = [(z_hook(L), capture_into(zs, L)) for L in range(self.n_layers)]
    hooks += [(mlp_out_hook(L), capture_into(mlps, L)) for L in range(self.n_layers)]
    with torch.no_grad():
        self.bridge.run_with_hooks(tokens, fwd_hooks=hooks)  # type: ignore[arg-type]
    self.n_forward += 1
    if self.work is not None:
        self.work.add(tokens.shape[0], tokens.shape[1], self.n_layers)
    return [zs[L] for L in range(self.n_layers)], [mlps[L] for L in range(self.n_layers)]

def prepare_groups(self: Any) -> list[Group]:
    """The runner's prompts in length groups, each with the replacements its ablated runs need."""
    import torch

    ds, dev = self.dataset, self._device()
    groups = ds.length_groups()
    repl = replacements(self.ablation, ds, groups, lambda tokens: _chunked_capture(self, tokens), self.mean_pool,
                        self.n_layers, dev)
    out = []
    for idx, (z_repl, mlp_repl) in zip(groups, repl, strict=True):
        n, length = len(idx), len(ds.clean[idx[0]])
        pos_masks = {}
        for name, where in ds.positions.items():
            mask = torch.zeros((n, length), dtype=torch.bool, device=dev)
            mask[torch.arange(n, device=dev), torch.tensor([where[i] for i in idx], device=dev)] = True
            pos_masks[name] = mask
        out.append(
            Group(
                index=torch.tensor(idx, dtype=torch.long, device="cpu"),  # into the runner's CPU results
                tokens=torch.tensor([ds.clean[i] for i in idx], dtype=torch.long, device=dev),
                end=torch.tensor([ds.positions["END"][i] for i in idx], device=dev),
                correct=torch.tensor([ds.correct[i] for i in idx], device=dev),
                incorrect=torch.tensor([ds.incorrect[i] for i in idx], device=dev),
                z_repl=z_repl,
                mlp_repl=mlp_repl,
                pos_masks=pos_masks,
            )
        )
    return out

def _chunked_capture(self: Any, tokens: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    import torch

    rows = max(1, self.max_tokens // tokens.shape[1])
    parts = [_capture(self, tokens[s : s + rows]) for s in range(0, tokens.shape[0], rows)]
    zs = [torch.cat([p[0][L] for p in parts]) for L in range(self.n_layers)]
    mlps = [torch.cat([p[1][L] for p in parts]) for L in range(self.n_layers)]
    return zs, mlps
