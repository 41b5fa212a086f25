"""Activation patching resumed at the patch: only the layers and positions it can change.

A patch at layer L and position p leaves every earlier layer, and every earlier
position of every layer, exactly as in the corrupted run. So each variant starts
from the cached corrupted residual entering layer L, recomputes only the rows at
or after its first patched position (their queries read the cached corrupted keys
and values of the earlier rows), and reads the answer logits at END. Variants with
the same start (layer, position) share the cached prefix and run as one batch.

The blocks are recomputed with :class:`circuitspec.bridge.rows.RowModel` (the
bridge's own norms and MLPs, attention from its processed weights), so this path
exists only for the architectures that module reproduces exactly;
:func:`resumed_scores` returns None for the others and the caller falls back to
full stacked forward passes. The tests check both paths agree.

Measured on SmolLM2-135M, 8 prompts of one template, 48 cells drawn at random
from the 3,240 of every map, on a shared 2-CPU machine: 1.0 s per cell resumed,
3.1 s with full stacked passes (largest difference 6e-7). The saving is largest
for late layers and late positions (END, S2), smallest for whole-sequence patches
in early layers. ``docs/explore.md`` lists the time of each full map.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from circuitspec.analyses.runs import Group, end_logit_diff, groups_of
from circuitspec.analyses.variants import Variant
from circuitspec.bridge.rows import RowModel, unsupported_reason

if TYPE_CHECKING:
    from circuitspec.bridge.loading import LoadedModel
    from circuitspec.data.dataset import Dataset

_NAME = re.compile(r"blocks\.(\d+)\.(hook_resid_pre|hook_attn_out|hook_mlp_out|attn\.hook_[zqkv]"
                   r"|attn\.hook_pattern)$")
_KIND = {"hook_resid_pre": "resid", "hook_attn_out": "attn_out", "hook_mlp_out": "mlp_out",
         "attn.hook_z": "z", "attn.hook_q": "q", "attn.hook_k": "k", "attn.hook_v": "v",
         "attn.hook_pattern": "pattern"}


def _parse(hook: str) -> tuple[int, str] | None:
    m = _NAME.match(hook)
    return (int(m.group(1)), _KIND[m.group(2)]) if m else None


@torch.no_grad()
def resumed_scores(
    model: LoadedModel,
    dataset: Dataset,
    variants: Sequence[Variant],
    *,
    max_rows: int = 4096,
    bar: Any = None,
) -> tuple[Tensor, float, float] | None:
    """Per-variant summed patched logit diff, and the clean and corrupted sums; None if unsupported."""
    if unsupported_reason(model.bridge) is not None:
        return None
    parsed = [[_parse(p.hook) for p in v] for v in variants]
    if any(x is None for v in parsed for x in v):
        return None
    rm = RowModel(model.bridge, model.info.n_heads, model.info.n_kv_heads)
    sums = torch.zeros(len(variants), device=rm.device)
    clean_sum = corrupt_sum = 0.0
    for group in groups_of(dataset, model.bridge):
        run = _GroupRun(rm, group)
        clean_sum += float(run.ld_clean.sum())
        corrupt_sum += float(run.ld_corrupt.sum())
        buckets: dict[tuple[int, int], list[int]] = {}
        for i, variant in enumerate(variants):
            buckets.setdefault(run.start(variant), []).append(i)
        for (layer, row), members in sorted(buckets.items()):
            per_pass = max(1, max_rows // (run.batch * (run.n_pos - row)))
            for k in range(0, len(members), per_pass):
                chunk = members[k : k + per_pass]
                ld = run.resume(layer, row, [variants[i] for i in chunk])  # [S, B]
                sums[chunk] += ld.sum(1)
                if bar is not None:
                    bar.advance(len(chunk))
    return sums.cpu(), clean_sum, corrupt_sum


class _GroupRun:
    """Clean and corrupted caches of one length group, and the resumed forward."""
    def __init__(self, rm: Any, group: Group):
        self.rm, self.group = rm, group
        bridge, n = rm.bridge, rm.n_layers
        self.batch, self.n_pos = group.clean.shape
        wanted = ("hook_resid_pre", "attn.hook_z", "hook_attn_out", "hook_mlp_out", "attn.hook_pattern")
        logits_c, cc = bridge.run_with_cache(group.clean, names_filter=lambda s: s.endswith(wanted))
        logits_r, cr = bridge.run_with_cache(group.corrupt, names_filter=lambda s: s.endswith("hook_resid_pre"))
        dev = self.device = group.clean.device
        rows = torch.arange(self.batch, device=dev)
        end = group.positions["END"]
        self.ld_clean = end_logit_diff(logits_c[rows, end], group)
        self.ld_corrupt = end_logit_diff(logits_r[rows, end], group)
        self.corrupt_resid = [cr[f"blocks.{i}.hook_resid_pre"] for i in range(n)]
        self.corrupt_kv = [rm.clean_kv(i, self.corrupt_resid[i]) for i in range(n)]
        key, query = torch.arange(self.n_pos, device=dev)[None, :], torch.arange(self.n_pos, device=dev)[:, None]
        self.hidden = [(key > query) | ((query - key >= w) if w is not None else False) for w in rm.window]
        self.clean: dict[tuple[int, str], Tensor] = {}
        for i in range(n):
            resid = cc[f"blocks.{i}.hook_resid_pre"]
            q, k, v = self._qkv(i, resid)
            self.clean.update({
                (i, "resid"): resid, (i, "attn_out"): cc[f"blocks.{i}.hook_attn_out"],
                (i, "mlp_out"): cc[f"blocks.{i}.hook_mlp_out"], (i, "z"): cc[f"blocks.{i}.attn.hook_z"],
                (i, "pattern"): cc[f"blocks.{i}.attn.hook_pattern"], (i, "q"): q, (i, "k"): k, (i, "v"): v,
            })

    def _qkv(self, layer: int, resid: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Unrotated q [..., H, dh], k and v [..., n_kv, dh] of residual rows (after any q/k norms)."""
        return self.rm.qkv(layer, self.rm.norm1(layer, resid))  # type: ignore[no-any-return]

    def start(self, variant: Variant) -> tuple[int, int]:
        """The first layer and the first row (over this group's prompts) the variant can change."""
        last = int(self.group.positions["END"].min())
        if not variant:
            return self.rm.n_layers - 1, last
        layers, rows = [], []
        for p in variant:
            layer, kind = _parse(p.hook)  # type: ignore[misc]
            layers.append(layer)
            whole = p.position is None or kind in ("q", "k", "v", "pattern")
            rows.append(0 if whole else int(self.group.positions[p.position].min()))  # type: ignore[index]
        return min(layers), min(*rows, last)

    def _masks(self, chunk: Sequence[Variant], row: int) -> dict[tuple[int, str], Tensor]:
        """(layer, kind) -> bool mask [S, B, R, slots or 1, 1] (pattern: [S, 1, H, 1, 1])."""
        n_s, n_r = len(chunk), self.n_pos - row
        slots = {"z": self.rm.n_heads, "q": self.rm.n_heads, "k": self.rm.n_kv, "v": self.rm.n_kv}
        masks: dict[tuple[int, str], Tensor] = {}
        dev = self.device
        brow = torch.arange(self.batch, device=dev)
        for s, variant in enumerate(chunk):
            for p in variant:
                layer, kind = _parse(p.hook)  # type: ignore[misc]
                if kind == "pattern":
                    m = masks.setdefault((layer, kind), torch.zeros(n_s, 1, self.rm.n_heads, 1, 1, dtype=torch.bool,
                                                                    device=dev))
                    m[s, 0, p.head if p.head is not None else slice(None)] = True
                    continue
                m = masks.setdefault((layer, kind), torch.zeros(n_s, self.batch, n_r, slots.get(kind, 1), 1,
                                                               dtype=torch.bool, device=dev))
                slot = p.head if p.head is not None and kind in slots else slice(None)
                if p.position is None:
                    m[s, :, :, slot] = True
                else:
                    m[s, brow, self.group.positions[p.position] - row, slot] = True
        return masks

    def resume(self, start: int, row: int, chunk: Sequence[Variant]) -> Tensor:
        """Patched END logit diffs [S, B] of the variants in ``chunk``, all starting at (start, row)."""
        rm, n_s, b = self.rm, len(chunk), self.batch
        masks = self._masks(chunk, row)

        def patch(x: Tensor, layer: int, kind: str) -> Tensor:
            m = masks.get((layer, kind))
            if m is None:
                return x
            clean = self.clean[(layer, kind)][:, row:]
            if x.dim() == 4:  # [S, B, R, d]: masks carry a slot axis of 1
                return torch.where(m[..., 0], clean, x)
            return torch.where(m, clean, x)

        positions = torch.arange(row, self.n_pos, device=self.device)
        x = self.corrupt_resid[start][None, :, row:].expand(n_s, -1, -1, -1)
        for layer in range(start, rm.n_layers):
            x = patch(x, layer, "resid")
            q, k, v = self._qkv(layer, x)
            q, k, v = patch(q, layer, "q"), patch(k, layer, "k"), patch(v, layer, "v")
            q = rm.rotate(layer, q, positions, self.n_pos)
            k = rm.rotate(layer, k, positions, self.n_pos)
            k_pre, v_pre = (t[None, :, :row].expand(n_s, -1, -1, -1, -1) for t in self.corrupt_kv[layer])
            keys = rm.expand_kv(torch.cat([k_pre, k], dim=2))  # [S, B, T, H, dh]
            values = rm.expand_kv(torch.cat([v_pre, v], dim=2))
            scores = torch.einsum("sbrhd,sbthd->sbhrt", q, keys) * rm.scale
            hidden = self.hidden[layer][row:]  # [R, T]: the future, and beyond a local window
            pattern = torch.softmax(scores.masked_fill(hidden, float("-inf")).float(), dim=-1).to(q.dtype)
            m = masks.get((layer, "pattern"))
            if m is not None:
                clean = self.clean[(layer, "pattern")][:, :, row:][None]  # [1, B, H, R, T]
                pattern = torch.where(m, clean, pattern)
            z = patch(torch.einsum("sbhrt,sbthd->sbrhd", pattern, values), layer, "z")
            attn_out = patch(rm.attn_write(layer, rm.head_out(layer, z) + rm.layers[layer].b_O), layer,
                             "attn_out")
            mid = x if rm.parallel else x + attn_out
            mlp_out = patch(rm.mlp(layer, mid), layer, "mlp_out")
            x = x + attn_out + mlp_out
        rows = torch.arange(b, device=self.device)
        end = x[:, rows, self.group.positions["END"] - row]  # [S, B, d]
        g = self.group
        return torch.stack([rm.answer_diff(e, g.correct, g.incorrect) for e in end])
