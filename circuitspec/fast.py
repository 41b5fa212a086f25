"""The fast path-patching engine: the exact engine's numbers without its full passes.

:class:`FastEngine` has :class:`~circuitspec.engine.ExactEngine`'s interface and
reproduces its results (to float rounding, checked to 1e-4 in the tests), using
three facts about path patching:

1. Pass C freezes every head but the senders at its clean ``z``, so a head's
   output at a position depends on nothing else; the senders' change travels
   to a later position only through attention, which is frozen. The residual
   entering a receiver layer therefore differs from the clean one only by the
   senders' writes carried forward through the MLPs *at that same position*.
   Pass C becomes: project the cached ``z_corrupt - z_clean`` through ``W_O`` at
   the receiver positions and push it through the MLPs of the layers in between
   (a handful of rows, no attention). ``semantics="direct"`` is the same with the
   MLPs frozen.
2. Pass D changes nothing before the receiver layer, and nothing at positions
   before the patched one. It starts from the cached clean residual at the
   receiver layer and recomputes only rows ``>= min(patched position)``, the
   queries attending to the cached clean keys/values of the earlier rows.
3. Only the two answer columns of the unembedding are read at ``END``.

Many senders into one receiver (:meth:`FastEngine.sweep`) share the cached prefix
keys/values and run as one batch. Architectures that :mod:`circuitspec.fast_model`
cannot reproduce exactly (e.g. Gemma 3's extra norms) fall back to the exact
engine, with a warning.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from circuitspec.engine import (
    ExactEngine,
    Group,
    Receiver,
    Semantics,
    Sender,
    dataset_groups,
    logit_diff,
    position_mask,
)
from circuitspec.fast_model import RowModel, unsupported_reason

if TYPE_CHECKING:
    from circuitspec.dataset import Dataset
    from circuitspec.models import LoadedModel

__all__ = ["FastEngine"]


@dataclass
class FastCache:
    """Clean activations and corrupted-minus-clean writes of one chunk of prompts."""

    resid_pre: list[Tensor]  # [batch, pos, d_model] entering each layer; last = final residual
    resid_mid: list[Tensor]  # after attention (sequential blocks only)
    dz: list[Tensor]  # z_corrupt - z_clean [batch, pos, heads, d_head]
    dmlp: list[Tensor]  # mlp_out corrupt - clean [batch, pos, d_model]
    mlp: list[Tensor]  # clean mlp_out (sequential) [batch, pos, d_model]
    k: list[Tensor]  # clean rotated keys [batch, pos, n_kv, d_head]
    v: list[Tensor]
    ld_clean: Tensor
    ld_corrupt: Tensor


class FastEngine:
    """Exact path patching with cached clean runs and row-sparse recomputation."""

    name = "fast"

    def __init__(
        self,
        model: LoadedModel,
        dataset: Dataset,
        *,
        max_batch: int = 64,
        max_rows: int = 16384,
        check: bool = True,
    ):
        self.model = model
        self.bridge = model.bridge
        self.dataset = dataset
        self.n_layers = model.info.n_layers
        self.n_heads = model.info.n_heads
        self.max_rows = max_rows
        self.exact: ExactEngine | None = None
        reason = unsupported_reason(self.bridge)
        if reason is None:
            self.rows = RowModel(self.bridge, model.info.n_heads, model.info.n_kv_heads)
            self.groups = [
                chunk for group in dataset_groups(dataset) for chunk in _split(group, max_batch)
            ]
            with torch.no_grad():
                self.caches = [self._cache(g) for g in self.groups]
            if check:
                reason = self._self_check()
        if reason is not None:
            warnings.warn(f"FastEngine falls back to the exact engine: {reason}", stacklevel=2)
            self.exact = ExactEngine(model, dataset)

    # -- caches --------------------------------------------------------------------
    def _cache(self, group: Group) -> FastCache:
        names = ("attn.hook_z", "hook_mlp_out", "hook_resid_pre", "hook_resid_mid")
        last = f"blocks.{self.n_layers - 1}.hook_resid_post"

        def wanted(name: str) -> bool:
            return name.endswith(names) or name == last

        logits_c, cc = self.bridge.run_with_cache(group.clean, names_filter=wanted)
        logits_r, cr = self.bridge.run_with_cache(group.corrupt, names_filter=wanted)
        n = self.n_layers
        resid = [cc[f"blocks.{i}.hook_resid_pre"] for i in range(n)] + [cc[last]]
        kv = [self.rows.clean_kv(i, resid[i]) for i in range(n)]
        return FastCache(
            resid_pre=resid,
            resid_mid=[] if self.rows.parallel else [cc[f"blocks.{i}.hook_resid_mid"] for i in range(n)],
            dz=[cr[f"blocks.{i}.attn.hook_z"] - cc[f"blocks.{i}.attn.hook_z"] for i in range(n)],
            dmlp=[cr[f"blocks.{i}.hook_mlp_out"] - cc[f"blocks.{i}.hook_mlp_out"] for i in range(n)],
            mlp=[cc[f"blocks.{i}.hook_mlp_out"] for i in range(n)],
            k=[k for k, _ in kv],
            v=[v for _, v in kv],
            ld_clean=logit_diff(logits_c, group),
            ld_corrupt=logit_diff(logits_r, group),
        )

    @torch.no_grad()
    def _self_check(self) -> str | None:
        """Recompute the first chunk's clean run row-wise; it must match the bridge's."""
        group, cache = self.groups[0], self.caches[0]
        n_pos = group.clean.shape[1]
        everywhere = torch.arange(n_pos).expand(group.clean.shape[0], n_pos)
        receiver = Receiver(((0, 0),), "q", None)
        got = self._pass_d(group, cache, receiver, {0: cache.resid_pre[0][None]}, everywhere)[0]
        err = (got - cache.ld_clean).abs().max().item()
        return None if err <= 1e-4 else f"row-wise recomputation is off by {err:.2g}"

    def baselines(self) -> tuple[Tensor, Tensor]:
        """Per-prompt clean and corrupted logit differences, in dataset order."""
        if self.exact is not None:
            return self.exact.baselines()
        return (
            self._scatter([c.ld_clean[None] for c in self.caches])[0],
            self._scatter([c.ld_corrupt[None] for c in self.caches])[0],
        )

    def _scatter(self, parts: list[Tensor]) -> Tensor:
        out = torch.empty(parts[0].shape[0], len(self.dataset))
        for group, part in zip(self.groups, parts, strict=True):
            out[:, group.index] = part
        return out

    # -- public API ----------------------------------------------------------------------
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
        if self.exact is not None:
            return self.exact.patch(sender, receiver, semantics=semantics, freeze_mlps=freeze_mlps)
        return self.sweep(receiver, [sender], semantics=semantics, freeze_mlps=freeze_mlps)[0]

    @torch.no_grad()
    def sweep(
        self,
        receiver: Receiver,
        senders: list[Sender],
        *,
        semantics: Semantics = "path",
        freeze_mlps: bool = False,
    ) -> Tensor:
        """[n_senders, N]: each sender patched alone into the same receiver, as one batch."""
        if self.exact is not None:
            return torch.stack(
                [self.exact.patch(s, receiver, semantics=semantics, freeze_mlps=freeze_mlps) for s in senders]
            )
        frozen = freeze_mlps or semantics == "direct"
        parts = []
        for group, cache in zip(self.groups, self.caches, strict=True):
            batch, n_pos = group.clean.shape
            if receiver.is_logits:
                rows = group.positions["END"][:, None]
            elif receiver.at is None:
                rows = torch.arange(n_pos).expand(batch, n_pos)
            else:
                rows = group.positions[receiver.at][:, None]
            out = torch.empty(len(senders), batch)
            for chunk in self._sender_chunks(senders, batch * (n_pos - int(rows.min()))):
                out[chunk] = self._sweep_group(group, cache, receiver, [senders[i] for i in chunk], rows, frozen)
            parts.append(out)
        return self._scatter(parts)

    def _sender_chunks(self, senders: list[Sender], rows_per_sender: int) -> list[list[int]]:
        size = max(1, self.max_rows // max(1, rows_per_sender))
        return [list(range(i, min(i + size, len(senders)))) for i in range(0, len(senders), size)]

    def _sweep_group(
        self, group: Group, cache: FastCache, receiver: Receiver, senders: list[Sender], rows: Tensor, frozen: bool
    ) -> Tensor:
        targets = [self.n_layers] if receiver.is_logits else receiver.layers
        deltas, touched = self._pass_c(group, cache, senders, rows, targets, frozen)
        out = cache.ld_clean.expand(len(senders), -1).clone()
        live = [i for i, t in enumerate(touched) if t]
        if not live:
            return out
        b_idx = torch.arange(rows.shape[0])[:, None]
        new_in = {t: cache.resid_pre[t][b_idx, rows][None] + deltas[t][live] for t in targets}
        if receiver.is_logits:
            end = new_in[self.n_layers][:, :, 0]
            out[live] = self.rows.answer_diff(end, group.correct, group.incorrect)
        else:
            out[live] = self._pass_d(group, cache, receiver, new_in, rows)
        return out

    # -- pass C: the senders' change at the receiver rows ------------------------------------
    def _pass_c(
        self,
        group: Group,
        cache: FastCache,
        senders: list[Sender],
        rows: Tensor,
        targets: list[int],
        frozen: bool,
    ) -> tuple[dict[int, Tensor], list[bool]]:
        """Residual change [S, batch, K, d] entering each target layer, at ``rows`` [batch, K].

        Also says which senders reach any target at all (the others are no-ops).
        """
        batch, k_rows = rows.shape
        n_pos = group.clean.shape[1]
        b_idx = torch.arange(batch)[:, None]
        n_s = len(senders)
        masks = torch.stack(
            [position_mask(group, s.positions, n_pos)[b_idx, rows] for s in senders]
        ).unsqueeze(-1)  # [S, batch, K, 1]
        first = min(_first_layer(s) for s in senders)
        d_model = cache.resid_pre[0].shape[-1]
        delta = torch.zeros(n_s, batch, k_rows, d_model)
        out: dict[int, Tensor] = {}
        active = torch.zeros(n_s, dtype=torch.bool)
        last = max(targets)
        for layer in range(self.n_layers):
            if layer in targets:
                out[layer] = delta.clone()
            if layer >= last:
                break
            if layer < first:
                continue
            d_in = delta
            head_coef = torch.zeros(n_s, self.n_heads)
            mlp_coef = torch.zeros(n_s)
            for i, s in enumerate(senders):
                for sl, h in s.heads:
                    if sl == layer:
                        head_coef[i, h] = 1.0
                if layer in s.mlps:
                    mlp_coef[i] = 1.0
            if head_coef.any():
                dz = cache.dz[layer][b_idx, rows]  # [batch, K, H, dh]
                per_head = torch.einsum("bkhe,hed->bkhd", dz, self.rows.layers[layer].W_O)
                delta = delta + torch.einsum("sh,bkhd->sbkd", head_coef, per_head) * masks
            active |= (head_coef.sum(1) > 0) | (mlp_coef > 0)
            is_mlp_sender = mlp_coef > 0
            if is_mlp_sender.any():
                d_mlp = cache.dmlp[layer][b_idx, rows][None] * masks * mlp_coef[:, None, None, None]
                delta = delta + d_mlp
            redo = active & ~is_mlp_sender
            if frozen or not redo.any():
                continue
            idx = redo.nonzero()[:, 0]
            # The MLP reads resid_mid (sequential) or the block input (parallel residual).
            if self.rows.parallel:
                base = cache.resid_pre[layer][b_idx, rows]
                before = d_in[idx]
            else:
                base = cache.resid_mid[layer][b_idx, rows]
                before = delta[idx]
            # The cached clean output saves one MLP call per layer; small row counts make
            # these calls cost what reading the weights costs.
            clean_mlp = cache.mlp[layer][b_idx, rows]
            delta[idx] = delta[idx] + (self.rows.mlp(layer, base[None] + before) - clean_mlp[None])
        if last == self.n_layers:
            out[last] = delta
        return out, active.tolist()

    # -- pass D: the receivers' input replaced, rows at and after it recomputed -------------
    def _pass_d(
        self,
        group: Group,
        cache: FastCache,
        receiver: Receiver,
        new_in: dict[int, Tensor],
        rows: Tensor,
    ) -> Tensor:
        """[S, batch] logit difference with receiver inputs ``new_in[layer]`` [S, batch, K, d] at rows."""
        rm = self.rows
        batch, n_pos = group.clean.shape
        start = int(rows.min())
        n_r = n_pos - start
        positions = torch.arange(start, n_pos)
        q_pos = positions.expand(batch, n_r)
        b_idx = torch.arange(batch)[:, None]
        r_idx = rows - start
        by_layer: dict[int, list[int]] = {}
        for layer, head in receiver.heads:
            by_layer.setdefault(layer, []).append(head)
        first = min(by_layer)
        n_s = next(iter(new_in.values())).shape[0]
        resid = cache.resid_pre[first][:, start:].expand(n_s, -1, -1, -1)
        for layer in range(first, self.n_layers):
            xn = rm.norm1(layer, resid)
            q, k, v = rm.q(layer, xn), rm.expand_kv(rm.k(layer, xn)), rm.expand_kv(rm.v(layer, xn))
            heads = by_layer.get(layer)
            if heads is not None:
                xn_new = rm.norm1(layer, new_in[layer])  # [S, batch, K, d]
                if receiver.via == "q":
                    q = _scatter_heads(q, rm.q(layer, xn_new, heads), b_idx, r_idx, heads)
                else:
                    groups = [h // rm.group for h in heads]
                    proj = rm.k if receiver.via == "k" else rm.v
                    fresh = proj(layer, xn_new, groups)
                    if receiver.via == "k":
                        k = _scatter_heads(k, fresh, b_idx, r_idx, heads)
                    else:
                        v = _scatter_heads(v, fresh, b_idx, r_idx, heads)
            q = rm.rotate(q, q_pos, n_pos)
            k = rm.rotate(k, q_pos, n_pos)
            k_pre = rm.expand_kv(cache.k[layer][:, :start])
            v_pre = rm.expand_kv(cache.v[layer][:, :start])
            z = rm.attend(q, q_pos, k_pre, v_pre, k, v)
            attn = rm.head_out(layer, z) + rm.layers[layer].b_O
            if rm.parallel:
                resid = resid + attn + rm.mlp(layer, resid)
            else:
                mid = resid + attn
                resid = mid + rm.mlp(layer, mid)
        end = resid[:, torch.arange(batch), group.positions["END"] - start]  # [S, batch, d]
        return rm.answer_diff(end, group.correct, group.incorrect)


def _scatter_heads(x: Tensor, fresh: Tensor, b_idx: Tensor, r_idx: Tensor, heads: list[int]) -> Tensor:
    """x [S, batch, R, H, dh] with heads' slots at rows r_idx [batch, K] set to fresh [S, batch, K, h, dh]."""
    x = x.clone()
    sub = x[:, b_idx, r_idx]  # [S, batch, K, H, dh]
    sub[..., heads, :] = fresh
    x[:, b_idx, r_idx] = sub
    return x


def _first_layer(sender: Sender) -> int:
    return min([layer for layer, _ in sender.heads] + list(sender.mlps))


def _split(group: Group, size: int) -> list[Group]:
    """A length group in chunks of at most ``size`` prompts (bounds memory per pass)."""
    n = group.clean.shape[0]
    if n <= size:
        return [group]
    return [
        Group(
            index=group.index[i : i + size],
            clean=group.clean[i : i + size],
            corrupt=group.corrupt[i : i + size],
            correct=group.correct[i : i + size],
            incorrect=group.incorrect[i : i + size],
            positions={k: v[i : i + size] for k, v in group.positions.items()},
        )
        for i in range(0, n, size)
    ]
