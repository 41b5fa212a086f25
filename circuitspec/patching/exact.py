"""The exact path-patching engine: hooks on the bridge, full forward passes.

This is the reference every faster path is checked against. For one edge
(senders -> receivers via q/k/v at a position, or senders -> logits) it runs:

- ``semantics="path"`` (Wang et al. 2022): pass C runs the clean prompts with the
  senders' ``hook_z`` set to their corrupted values (at the sender positions) and
  every other head frozen at its clean ``hook_z``; MLPs and norms recompute
  (``freeze_mlps`` freezes MLPs too). The residual stream entering each receiver
  layer is recorded. For a logits receiver, pass C's logits are the answer.
- ``semantics="direct"`` (ACDC / auto-circuit edge patching): no pass C; the
  receiver's input is its clean input plus (sender_corrupt - sender_clean), the
  sender's output measured where it enters the residual stream.

Pass D runs the clean prompts once more, with the receiver heads' chosen input
(q, k or v) replaced at the receiver positions, and everything downstream free.
The receiver's norm is recomputed on its own copy (split q/k/v inputs).

Grouped-query attention: a key/value input is shared by several query heads,
so an edge into one head's k or v would leak into its group mates. Pass D runs
two copies of the batch: in one the shared k/v input is patched, in the other
it is not; at the layer's ``hook_z`` the receivers take the patched copy's z
and every other head the unpatched one's, and both copies continue identically.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from circuitspec.bridge.hooks import add_delta, capture_into, hooked, replace_with
from circuitspec.patching.types import (
    Group,
    Receiver,
    Semantics,
    Sender,
    check_semantics,
    dataset_groups,
    logit_diff,
    position_mask,
)

if TYPE_CHECKING:
    from circuitspec.bridge.loading import LoadedModel
    from circuitspec.bridge.work import Work
    from circuitspec.data.dataset import Dataset

def _stop(bridge: Any, tokens: Tensor, hooks: list, stop_at_layer: int | None) -> Any:
    with hooked(bridge, hooks):
        return bridge(tokens, stop_at_layer=stop_at_layer)


@dataclass
class GroupCache:
    """Clean and corrupted activations of one length group, computed once per run."""

    z_clean: list[Tensor]
    z_corrupt: list[Tensor]
    mlp_clean: list[Tensor]
    mlp_corrupt: list[Tensor]
    resid_clean: list[Tensor]  # resid_pre of each layer, clean run
    attn_clean: list[Tensor]  # hook_attn_out of each layer, clean run
    ld_clean: Tensor
    ld_corrupt: Tensor


class ExactEngine:
    """Hook-based exact path patching, with clean/corrupted caches shared across edges."""

    name = "reference"

    def __init__(self, model: LoadedModel, dataset: Dataset, work: Work | None = None):
        self.model = model
        self.bridge = model.bridge
        self.dataset = dataset
        self.work = work  # token-layers recomputed, counted per pass
        self.n_layers = model.info.n_layers
        self.n_heads = model.info.n_heads
        self.group_size = model.info.group_size
        self.groups = dataset_groups(dataset, self.bridge.W_U.device)  # the caches live beside the model
        self.caches = [self._cache(g) for g in self.groups]

    # -- caches -----------------------------------------------------------------
    def _cache(self, group: Group) -> GroupCache:
        names = ("attn.hook_z", "hook_mlp_out", "hook_resid_pre", "hook_attn_out")

        def wanted(name: str) -> bool:
            return name.endswith(names)

        with torch.no_grad():
            logits_c, cache_c = self.bridge.run_with_cache(group.clean, names_filter=wanted)
            logits_r, cache_r = self.bridge.run_with_cache(group.corrupt, names_filter=wanted)
        n = self.n_layers
        if self.work is not None:
            self.work.add(2 * group.clean.shape[0], group.clean.shape[1], n)
        return GroupCache(
            z_clean=[cache_c[f"blocks.{i}.attn.hook_z"] for i in range(n)],
            z_corrupt=[cache_r[f"blocks.{i}.attn.hook_z"] for i in range(n)],
            mlp_clean=[cache_c[f"blocks.{i}.hook_mlp_out"] for i in range(n)],
            mlp_corrupt=[cache_r[f"blocks.{i}.hook_mlp_out"] for i in range(n)],
            resid_clean=[cache_c[f"blocks.{i}.hook_resid_pre"] for i in range(n)],
            attn_clean=[cache_c[f"blocks.{i}.hook_attn_out"] for i in range(n)],
            ld_clean=logit_diff(logits_c, group),
            ld_corrupt=logit_diff(logits_r, group),
        )

    def _stop(self, tokens: Tensor, hooks: list, stop_at_layer: int | None) -> Any:
        if self.work is not None:
            self.work.add(tokens.shape[0], tokens.shape[1], stop_at_layer or self.n_layers)
        return _stop(self.bridge, tokens, hooks, stop_at_layer)

    def baselines(self) -> tuple[Tensor, Tensor]:
        """Per-prompt clean and corrupted logit differences, in dataset order."""
        return self._scatter([c.ld_clean for c in self.caches]), self._scatter(
            [c.ld_corrupt for c in self.caches]
        )

    def _scatter(self, parts: list[Tensor]) -> Tensor:
        """Per-group results -> one tensor in dataset order, on the CPU (results leave the device here)."""
        out = torch.empty(len(self.dataset), device="cpu")
        for group, part in zip(self.groups, parts, strict=True):
            out[group.index.cpu()] = part.cpu()
        return out

    # -- one edge ------------------------------------------------------------------
    @torch.no_grad()
    def patch(
        self,
        sender: Sender,
        receiver: Receiver,
        *,
        semantics: Semantics = "path",
        freeze_mlps: bool = False,
    ) -> Tensor:
        """Per-prompt patched logit difference for one edge, in dataset order."""
        check_semantics(semantics)
        parts = []
        for group, cache in zip(self.groups, self.caches, strict=True):
            parts.append(self._patch_group(group, cache, sender, receiver, semantics, freeze_mlps))
        return self._scatter(parts)

    @torch.no_grad()
    def sweep(
        self,
        receiver: Receiver,
        senders: list[Sender],
        *,
        semantics: Semantics = "path",
        freeze_mlps: bool = False,
    ) -> Tensor:
        """[n_senders, N]: each sender patched alone into the same receiver, one edge at a time."""
        check_semantics(semantics)
        return torch.stack([self.patch(s, receiver, semantics=semantics, freeze_mlps=freeze_mlps)
                            for s in senders])

    def _patch_group(
        self,
        group: Group,
        cache: GroupCache,
        sender: Sender,
        receiver: Receiver,
        semantics: Semantics,
        freeze_mlps: bool,
    ) -> Tensor:
        n_pos = group.clean.shape[1]
        s_mask = position_mask(group, sender.positions, n_pos)
        if semantics == "path":
            hooks = self._sender_hooks(cache, sender, s_mask, freeze_all=True, freeze_mlps=freeze_mlps)
            if receiver.is_logits:
                return logit_diff(self._stop(group.clean, hooks, None), group)
            captured: dict[int, Tensor] = {}
            for layer in receiver.layers:
                hooks.append((f"blocks.{layer}.hook_resid_pre", capture_into(captured, layer)))
            self._stop(group.clean, hooks, max(receiver.layers) + 1)
            new_input = captured
        else:
            deltas = self._direct_deltas(group, cache, sender, s_mask)
            if receiver.is_logits:
                hooks = [("ln_final.hook_in", add_delta(deltas[self.n_layers]))]
                return logit_diff(self._stop(group.clean, hooks, None), group)
            new_input = {layer: cache.resid_clean[layer] + deltas[layer] for layer in receiver.layers}
        r_mask = position_mask(group, None if receiver.at is None else (receiver.at,), n_pos)
        return self._receive(group, receiver, new_input, r_mask)

    def _sender_hooks(
        self,
        cache: GroupCache,
        sender: Sender,
        s_mask: Tensor,
        *,
        freeze_all: bool,
        freeze_mlps: bool,
    ) -> list[tuple[str, Callable]]:
        """hook_z (and hook_mlp_out) overrides: senders corrupted at s_mask, others clean."""
        hooks: list[tuple[str, Callable]] = []
        by_layer: dict[int, list[int]] = {}
        for layer, head in sender.heads:
            by_layer.setdefault(layer, []).append(head)
        for layer in range(self.n_layers):
            heads = by_layer.get(layer, [])
            if not heads and not freeze_all:
                continue
            z = cache.z_clean[layer].clone()
            for head in heads:
                z[:, :, head][s_mask] = cache.z_corrupt[layer][:, :, head][s_mask]
            hooks.append((f"blocks.{layer}.attn.hook_z", replace_with(z)))
        for layer in range(self.n_layers):
            is_sender = layer in sender.mlps
            if not (is_sender or freeze_mlps):
                continue
            mlp = cache.mlp_clean[layer].clone()
            if is_sender:
                mlp[s_mask] = cache.mlp_corrupt[layer][s_mask]
            hooks.append((f"blocks.{layer}.hook_mlp_out", replace_with(mlp)))
        return hooks

    def _direct_deltas(
        self, group: Group, cache: GroupCache, sender: Sender, s_mask: Tensor
    ) -> dict[int, Tensor]:
        """Accumulated sender_corrupt - sender_clean in the residual entering each layer.

        Key ``n_layers`` holds the total entering the final norm. A head's output is
        measured as the change of its layer's attention output when only its z changes,
        which is exact also where a norm follows the attention block (Gemma 3).
        """
        per_layer: list[tuple[int, Tensor]] = []
        for layer in sorted({layer for layer, _ in sender.heads}):
            only = Sender(heads=tuple(h for h in sender.heads if h[0] == layer))
            hooks = self._sender_hooks(cache, only, s_mask, freeze_all=False, freeze_mlps=False)
            captured: dict[int, Tensor] = {}
            hooks.append((f"blocks.{layer}.hook_attn_out", capture_into(captured, layer)))
            self._stop(group.clean, hooks, layer + 1)
            per_layer.append((layer, captured[layer] - cache.attn_clean[layer]))
        for layer in sender.mlps:
            delta = torch.zeros_like(cache.mlp_clean[layer])
            delta[s_mask] = (cache.mlp_corrupt[layer] - cache.mlp_clean[layer])[s_mask]
            per_layer.append((layer, delta))
        # Attention and MLP of layer l both write before the residual enters layer l + 1.
        out: dict[int, Tensor] = {}
        for target in range(self.n_layers + 1):
            out[target] = sum(
                (d for layer, d in per_layer if layer < target),
                torch.zeros_like(cache.resid_clean[0]),
            )
        return out

    def _receive(
        self,
        group: Group,
        receiver: Receiver,
        new_input: dict[int, Tensor],
        r_mask: Tensor,
    ) -> Tensor:
        """Pass D: the receivers' q/k/v input replaced at r_mask; the rest runs free."""
        via = receiver.via
        assert via is not None
        hooks: list[tuple[str, Callable]] = []
        by_layer: dict[int, list[int]] = {}
        for layer, head in receiver.heads:
            by_layer.setdefault(layer, []).append(head)
        tokens = group.clean
        doubled = via in ("k", "v") and self.group_size > 1
        batch = tokens.shape[0]
        for layer, heads in by_layer.items():
            if via == "q":
                slots = heads
            else:
                slots = sorted({h // self.group_size for h in heads})
            hooks.append(
                (f"blocks.{layer}.hook_{via}_input", _set_input(new_input[layer], r_mask, slots, doubled, batch))
            )
            if doubled:
                hooks.append((f"blocks.{layer}.attn.hook_z", _merge_copies(heads, batch)))
        if doubled:
            tokens = torch.cat([tokens, tokens])
        logits = self._stop(tokens, hooks, None)
        return logit_diff(logits[:batch], group)


def _set_input(value: Tensor, mask: Tensor, slots: list[int], doubled: bool, batch: int) -> Callable:
    """Write value into the per-head input slots at mask (first copy only when doubled)."""

    def hook(act: Tensor, hook: Any) -> Tensor:
        act = act.clone()
        part = act[:batch]
        for slot in slots:
            part[:, :, slot][mask] = value[mask]
        act[:batch] = part
        return act

    return hook


def _merge_copies(receivers: list[int], batch: int) -> Callable:
    """Receivers take z from the patched copy, all others from the unpatched one."""

    def hook(z: Tensor, hook: Any) -> Tensor:
        merged = z[batch:].clone()
        merged[:, :, receivers] = z[:batch, :, receivers]
        return torch.cat([merged, merged])

    return hook
