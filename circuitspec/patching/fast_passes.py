"""Passes C and D of the fast engine over every length group at once.

The clean cache is stored *flat*: every chunk's ``[batch, pos]`` tokens laid end
to end as rows of one ``[tokens, ...]`` tensor per layer. The position-wise
pieces of a block (norms, MLP, the q/k/v and output projections) then run on the
rows of every length group in a single call, so each layer's weights are read
once per edge instead of once per length group: with the few rows path patching
recomputes, those calls cost what reading the weights costs. Only attention,
which reads each group's own cached keys/values, runs per group (small einsums).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from circuitspec.bridge.rows import RowModel
from circuitspec.patching.types import Group, Receiver, Sender


@dataclass
class FlatCache:
    """Clean activations and corrupted-minus-clean writes, every chunk's tokens as rows."""

    resid_pre: list[Tensor]  # [tokens, d_model] entering each layer; last = final residual
    resid_mid: list[Tensor]  # after attention (sequential blocks only)
    dz: list[Tensor]  # z_corrupt - z_clean [tokens, heads, d_head]
    dmlp: list[Tensor]  # mlp_out corrupt - clean [tokens, d_model]
    mlp: list[Tensor]  # clean mlp_out [tokens, d_model]
    k: list[Tensor]  # clean rotated keys [tokens, n_kv, d_head]
    v: list[Tensor]
    attn_pre: list[Tensor]  # clean sum_h z_h W_O + b_O before the post-attention norm (sandwich only)


@dataclass
class Layout:
    """Where each chunk's tokens live in the flat cache."""

    groups: list[Group]
    offsets: list[int]  # first flat row of each chunk

    def base(self, g: int) -> Tensor:
        """[batch, 1] flat row of position 0 of each prompt of chunk g."""
        tokens = self.groups[g].clean
        batch, n_pos = tokens.shape
        return self.offsets[g] + (torch.arange(batch, device=tokens.device) * n_pos)[:, None]

    def flat(self, per_group: list[Tensor]) -> Tensor:
        """Flat rows of per-chunk positions [batch, K] (concatenated in chunk, prompt, K order)."""
        return torch.cat([(self.base(g) + rows).flatten() for g, rows in enumerate(per_group)])


@dataclass
class DPlan:
    """Pass D's recomputed rows: positions >= each chunk's first patched position."""

    src: Tensor  # [T] flat cache rows recomputed
    pos: Tensor  # [T] their positions
    spans: list[tuple[int, int, int, int, int]]  # per chunk: (offset in T, batch, start, n_pos, cache offset)
    recv: Tensor  # [F] index in T of each receiver row (pass C order)
    end: Tensor  # [N] index in T of each prompt's END row


def d_plan(layout: Layout, rows: list[Tensor]) -> DPlan:
    src, pos, spans, recv, end = [], [], [], [], []
    t = 0
    for g, (group, r) in enumerate(zip(layout.groups, rows, strict=True)):
        batch, n_pos = group.clean.shape
        start = int(r.min())
        n_r = n_pos - start
        p = torch.arange(start, n_pos, device=r.device)
        src.append((layout.base(g) + p).flatten())
        pos.append(p.repeat(batch))
        item = t + (torch.arange(batch, device=r.device) * n_r)[:, None]
        recv.append((item + r - start).flatten())
        end.append(item[:, 0] + group.positions["END"] - start)
        spans.append((t, batch, start, n_pos, layout.offsets[g]))
        t += batch * n_r
    return DPlan(torch.cat(src), torch.cat(pos), spans, torch.cat(recv), torch.cat(end))


def first_layer(sender: Sender) -> int:
    return min([layer for layer, _ in sender.heads] + list(sender.mlps))


def pass_c(
    rm: RowModel,
    cache: FlatCache,
    senders: list[Sender],
    flat_rows: Tensor,
    masks: Tensor,
    targets: list[int],
    frozen: bool,
) -> tuple[dict[int, Tensor], list[bool]]:
    """Residual change [S, F, d] entering each target layer at ``flat_rows`` [F].

    ``masks`` [S, F, 1] says where each sender is patched. Pass C freezes every
    head but the senders, so the change at a row travels only through the MLPs
    at that same row: a handful of rows of every chunk, in one batch per layer.
    Also says which senders reach any target at all (the others are no-ops).
    """
    n_s, n_layers = len(senders), rm.n_layers
    first = min(first_layer(s) for s in senders)
    device = cache.resid_pre[0].device
    delta = torch.zeros(n_s, flat_rows.shape[0], cache.resid_pre[0].shape[-1], device=device)
    out: dict[int, Tensor] = {}
    # Which senders act where is known from the senders alone: it is decided on the host, so
    # no branch below waits for the device.
    active = torch.zeros(n_s, dtype=torch.bool, device="cpu")
    last = max(targets)
    for layer in range(n_layers):
        if layer in targets:
            out[layer] = delta.clone()
        if layer >= last:
            break
        if layer < first:
            continue
        d_in = delta
        # Filled on the host (one small copy, not one device write per head), then moved.
        head_host = torch.zeros(n_s, rm.n_heads, device="cpu")
        mlp_host = torch.zeros(n_s, device="cpu")
        for i, s in enumerate(senders):
            for sl, h in s.heads:
                if sl == layer:
                    head_host[i, h] = 1.0
            if layer in s.mlps:
                mlp_host[i] = 1.0
        head_coef, mlp_coef = head_host.to(device), mlp_host.to(device)
        heads = head_host.any(0).nonzero()[:, 0].to(device)
        if len(heads):
            dz = cache.dz[layer][flat_rows][:, heads]  # [F, h, dh]
            per_head = torch.einsum("fhe,hed->fhd", dz, rm.layers[layer].W_O[heads])
            write = torch.einsum("sh,fhd->sfd", head_coef[:, heads], per_head) * masks
            if rm.sandwich:
                # A post-attention norm makes the layer's write non-linear in its heads:
                # norm(clean sum + the senders' change) - norm(clean sum).
                here = head_host.any(1).nonzero()[:, 0].to(device)
                pre = cache.attn_pre[layer][flat_rows]
                clean = rm.attn_write(layer, pre)
                write[here] = rm.attn_write(layer, pre[None] + write[here]) - clean[None]
            delta = delta + write
        active |= (head_host.sum(1) > 0) | (mlp_host > 0)
        is_mlp_sender = mlp_host > 0
        if is_mlp_sender.any():
            delta = delta + cache.dmlp[layer][flat_rows][None] * masks * mlp_coef[:, None, None]
        redo = active & ~is_mlp_sender
        if frozen or not redo.any():
            continue
        idx = redo.nonzero()[:, 0].to(device)
        # The MLP reads resid_mid (sequential) or the block input (parallel residual).
        if rm.parallel:
            base, before = cache.resid_pre[layer][flat_rows], d_in[idx]
        else:
            base, before = cache.resid_mid[layer][flat_rows], delta[idx]
        # The cached clean output saves one MLP call per layer.
        clean_mlp = cache.mlp[layer][flat_rows]
        delta[idx] = delta[idx] + (rm.mlp(layer, base[None] + before) - clean_mlp[None])
    if last == n_layers:
        out[last] = delta
    return out, active.tolist()


def pass_d(
    rm: RowModel,
    cache: FlatCache,
    receiver: Receiver,
    new_in: dict[int, Tensor],
    plan: DPlan,
    correct: Tensor,
    incorrect: Tensor,
) -> Tensor:
    """[S, N] logit difference with receiver inputs ``new_in[layer]`` [S, F, d] at the receiver rows.

    Rows before each chunk's first patched position are unchanged; the others are
    recomputed, all chunks in one batch for the position-wise pieces, attention per
    chunk over its cached clean prefix keys/values.
    """
    by_layer: dict[int, list[int]] = {}
    for layer, head in receiver.heads:
        by_layer.setdefault(layer, []).append(head)
    first = min(by_layer)
    n_s = next(iter(new_in.values())).shape[0]
    max_pos = max(span[3] for span in plan.spans)
    resid = cache.resid_pre[first][plan.src].expand(n_s, -1, -1)
    n_kv = rm.n_kv
    for layer in range(first, rm.n_layers):
        xn = rm.norm1(layer, resid)
        q, k, v = rm.qkv(layer, xn)  # [S, T, H or kv, dh], q/k-normed, unrotated
        k, v = rm.expand_kv(k), rm.expand_kv(v)
        heads = by_layer.get(layer)
        if heads is not None:
            xn_new = rm.norm1(layer, new_in[layer])  # [S, F, d]
            if receiver.via == "q":
                q = _scatter_heads(q, rm.q(layer, xn_new, heads), plan.recv, heads)
            else:
                kv_groups = [h // rm.group for h in heads]
                proj = rm.k if receiver.via == "k" else rm.v
                fresh = proj(layer, xn_new, kv_groups)
                if receiver.via == "k":
                    k = _scatter_heads(k, fresh, plan.recv, heads)
                else:
                    v = _scatter_heads(v, fresh, plan.recv, heads)
        q = rm.rotate(layer, q, plan.pos, max_pos)
        k = rm.rotate(layer, k, plan.pos, max_pos)
        # After the last layer only END's row is read: there the other rows are keys
        # and values only, and queries, output projection and MLP run at END alone.
        last = layer == rm.n_layers - 1
        zs, p0 = [], 0
        for t0, batch, start, n_pos, src0 in plan.spans:
            n_r = n_pos - start
            sl = slice(t0, t0 + batch * n_r)

            def view(x: Tensor, sl: slice = sl, batch: int = batch, n_r: int = n_r) -> Tensor:
                return x[:, sl].reshape(n_s, batch, n_r, *x.shape[2:])

            k_pre = cache.k[layer][src0 : src0 + batch * n_pos].reshape(batch, n_pos, n_kv, -1)[:, :start]
            v_pre = cache.v[layer][src0 : src0 + batch * n_pos].reshape(batch, n_pos, n_kv, -1)[:, :start]
            if last:
                ends = plan.end[p0 : p0 + batch]
                q_here, q_pos = q[:, ends, None], plan.pos[ends][:, None]
            else:
                q_here, q_pos = view(q), torch.arange(start, n_pos, device=q.device).expand(batch, n_r)
            z = rm.attend(q_here, q_pos, k_pre, v_pre, view(k), view(v), rm.window[layer])
            zs.append(z.flatten(1, 2))
            p0 += batch
        z = torch.cat(zs, dim=1) if len(zs) > 1 else zs[0]
        if last:
            resid = resid[:, plan.end]
        attn = rm.attn_write(layer, rm.head_out(layer, z) + rm.layers[layer].b_O)
        if rm.parallel:
            resid = resid + attn + rm.mlp(layer, resid)
        else:
            mid = resid + attn
            resid = mid + rm.mlp(layer, mid)
    return rm.answer_diff(resid, correct, incorrect)


def _scatter_heads(x: Tensor, fresh: Tensor, recv: Tensor, heads: list[int]) -> Tensor:
    """x [S, T, H, dh] with heads' slots at rows ``recv`` [F] set to fresh [S, F, h, dh]."""
    x = x.clone()
    sub = x[:, recv]  # [S, F, H, dh]
    sub[..., heads, :] = fresh
    x[:, recv] = sub
    return x
