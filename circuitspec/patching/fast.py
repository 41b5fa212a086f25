"""The fast path-patching engine: the exact engine's numbers without its full passes.

:class:`FastEngine` implements the same :class:`~circuitspec.patching.engine.PatchEngine` protocol as
:class:`~circuitspec.patching.exact.ExactEngine` and
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

The cache is flat (every length group's tokens as rows of one tensor per layer),
so passes C and D run every length group in one batch for the position-wise
matmuls (:mod:`circuitspec.patching.fast_passes`); with the few rows they recompute, those
cost what reading the weights costs, once per layer instead of once per group.
Many senders into one receiver (:meth:`FastEngine.sweep`) share the cached prefix
keys/values and run as one batch. Architectures that :mod:`circuitspec.bridge.rows`
cannot reproduce exactly (e.g. logit softcapping), and a model whose row-wise clean run
disagrees with the bridge, raise :class:`~circuitspec.errors.EngineUnsupported`;
:func:`~circuitspec.patching.engine.select_engine` then runs the exact engine, with a warning.

Gemma 3 norms the attention output again before adding it (a sandwich norm), so a
sender head's write is not ``dz W_O`` alone: pass C computes
``post_norm(clean head sum + dz W_O) - post_norm(clean head sum)`` at each sender
layer, from the clean pre-norm head sum cached per row.
"""

from __future__ import annotations

from itertools import accumulate
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from circuitspec.bridge.device import pass_size
from circuitspec.bridge.rows import RowModel, unsupported_reason
from circuitspec.errors import EngineUnsupported
from circuitspec.patching.fast_passes import FlatCache, Layout, d_plan, pass_c, pass_d
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

__all__ = ["FastEngine"]

CPU_ROWS = 8192  # rows one sweep recomputes at once on the CPU (measured on the 2-core machine)


class FastEngine:
    """Exact path patching with cached clean runs and row-sparse recomputation."""

    name = "fast"

    def __init__(
        self,
        model: LoadedModel,
        dataset: Dataset,
        *,
        max_batch: int = 64,
        max_rows: int | None = None,
        check: bool = True,
        work: Work | None = None,
    ):
        self.model = model
        self.work = work  # token-layers recomputed: full passes for the caches, rows for C and D
        self.bridge = model.bridge
        self.dataset = dataset
        self.n_layers = model.info.n_layers
        self.n_heads = model.info.n_heads
        reason = unsupported_reason(self.bridge)
        if reason is not None:
            raise EngineUnsupported(reason)
        self.rows = RowModel(self.bridge, model.info.n_heads, model.info.n_kv_heads)
        self.device = self.rows.device  # groups, caches and passes live here; results go back to the CPU
        groups = dataset_groups(dataset, self.device)
        self.groups = [chunk for group in groups for chunk in _split(group, max_batch)]
        sizes = [g.clean.numel() for g in self.groups]
        self.layout = Layout(self.groups, [sum(sizes[:i]) for i in range(len(sizes))])
        self.order = torch.cat([g.index for g in self.groups])  # flat prompt -> dataset index
        self.correct = torch.cat([g.correct for g in self.groups])
        self.incorrect = torch.cat([g.incorrect for g in self.groups])
        with torch.no_grad():
            self._build_cache()
        # Rows one sweep recomputes at once: sized after the cache, from the memory it left.
        self.max_rows = max_rows if max_rows is not None else pass_size(
            self.device, CPU_ROWS, d_model=model.info.d_model, n_layers=self.n_layers)
        self._masks: dict[tuple[str, ...] | None, Tensor] = {}
        if check and (reason := self._self_check()) is not None:
            raise EngineUnsupported(reason)

    # -- caches --------------------------------------------------------------------
    def _build_cache(self) -> None:
        names: tuple[str, ...] = ("attn.hook_z", "hook_mlp_out", "hook_resid_pre", "hook_resid_mid")
        if self.rows.sandwich:
            names += ("attn.hook_out",)
        n = self.n_layers
        last = f"blocks.{n - 1}.hook_resid_post"

        def wanted(name: str) -> bool:
            return name.endswith(names) or name == last

        # Each field is allocated once at its full flat size and filled chunk by chunk:
        # concatenating per-chunk pieces would hold the cache twice at the peak (N=512
        # on SmolLM2: 8.4 GiB for the process instead of about 6).
        flat: dict[str, list[Tensor]] = {}
        total = self.layout.offsets[-1] + self.groups[-1].clean.numel()
        ld_clean, ld_corrupt = [], []
        for group, offset in zip(self.groups, self.layout.offsets, strict=True):
            logits_c, cc = self.bridge.run_with_cache(group.clean, names_filter=wanted)
            logits_r, cr = self.bridge.run_with_cache(group.corrupt, names_filter=wanted)
            self._add(2 * group.clean.shape[0], group.clean.shape[1], n)
            ld_clean.append(logit_diff(logits_c, group))
            ld_corrupt.append(logit_diff(logits_r, group))
            resid = [cc[f"blocks.{i}.hook_resid_pre"] for i in range(n)] + [cc[last]]
            kv = [self.rows.clean_kv(i, resid[i]) for i in range(n)]
            fields = {
                "resid_pre": resid,
                "resid_mid": [] if self.rows.parallel else [cc[f"blocks.{i}.hook_resid_mid"] for i in range(n)],
                "dz": [cr[f"blocks.{i}.attn.hook_z"] - cc[f"blocks.{i}.attn.hook_z"] for i in range(n)],
                "dmlp": [cr[f"blocks.{i}.hook_mlp_out"] - cc[f"blocks.{i}.hook_mlp_out"] for i in range(n)],
                "mlp": [cc[f"blocks.{i}.hook_mlp_out"] for i in range(n)],
                "k": [k for k, _ in kv],
                "v": [v for _, v in kv],
                # The head sum before the post-attention norm (hook_attn_out is after it).
                "attn_pre": [cc[f"blocks.{i}.attn.hook_out"] for i in range(n)] if self.rows.sandwich else [],
            }
            for name, per_layer in fields.items():
                rows = [x.flatten(0, 1) for x in per_layer]
                if name not in flat:
                    flat[name] = [x.new_empty((total, *x.shape[1:])) for x in rows]
                for dest, x in zip(flat[name], rows, strict=True):
                    dest[offset : offset + x.shape[0]] = x
            del cc, cr, fields, resid, kv
        self.cache = FlatCache(**flat)
        self.ld_clean, self.ld_corrupt = torch.cat(ld_clean), torch.cat(ld_corrupt)

    @torch.no_grad()
    def _self_check(self, per_chunk: int = 2) -> str | None:
        """Recompute clean runs row-wise; they must match the bridge's.

        A row model that disagrees with the bridge (a norm, rotary or scale read
        wrongly) disagrees on every prompt, so the first ``per_chunk`` prompts of each
        chunk (every prompt length) are checked, not all N: a full row-wise pass over
        the dataset would cost as much as a naive edge.
        """
        heads = [_split(g, per_chunk)[0] for g in self.groups]
        layout = Layout(heads, self.layout.offsets)  # a chunk's first prompts start at its offset
        starts = accumulate((g.clean.shape[0] for g in self.groups[:-1]), initial=0)
        dev = self.device
        pick = torch.cat([torch.arange(s, s + h.clean.shape[0], device=dev) for s, h in zip(starts, heads, strict=True)])
        everywhere = [torch.arange(h.clean.shape[1], device=dev).expand(h.clean.shape) for h in heads]
        plan = d_plan(layout, everywhere)
        receiver = Receiver(((0, 0),), "q", None)
        new_in = {0: self.cache.resid_pre[0][layout.flat(everywhere)][None]}
        got = pass_d(self.rows, self.cache, receiver, new_in, plan, self.correct[pick], self.incorrect[pick])[0]
        self._add(plan.src.shape[0], 1, self.n_layers)
        err = (got - self.ld_clean[pick]).abs().max().item()
        return None if err <= 1e-4 else f"row-wise recomputation is off by {err:.2g}"

    def baselines(self) -> tuple[Tensor, Tensor]:
        """Per-prompt clean and corrupted logit differences, in dataset order, on the CPU."""
        out = self._scatter(torch.stack([self.ld_clean, self.ld_corrupt])).cpu()
        return out[0], out[1]

    def _scatter(self, flat: Tensor) -> Tensor:
        """[..., N] in flat (chunk) order -> dataset order."""
        out = torch.empty_like(flat)
        out[..., self.order] = flat
        return out

    def _mask(self, names: tuple[str, ...] | None) -> Tensor:
        """[tokens] bool over the flat cache: the named positions of every prompt."""
        if names not in self._masks:
            self._masks[names] = torch.cat(
                [position_mask(g, names, g.clean.shape[1]).flatten() for g in self.groups]
            )
        return self._masks[names]

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
        """Per-prompt patched logit difference for one edge, in dataset order, on the CPU."""
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
        """[n_senders, N] on the CPU: each sender patched alone into the same receiver, as one batch."""
        check_semantics(semantics)
        frozen = freeze_mlps or semantics == "direct"
        rows = []
        for group in self.groups:
            batch, n_pos = group.clean.shape
            if receiver.is_logits:
                rows.append(group.positions["END"][:, None])
            elif receiver.at is None:
                rows.append(torch.arange(n_pos, device=self.device).expand(batch, n_pos))
            else:
                rows.append(group.positions[receiver.at][:, None])
        flat_rows = self.layout.flat(rows)
        plan = None if receiver.is_logits else d_plan(self.layout, rows)
        per_sender = flat_rows.shape[0] if plan is None else plan.src.shape[0]
        out = torch.empty(len(senders), len(self.order), device=self.device)
        for chunk in self._sender_chunks(senders, per_sender):
            out[chunk] = self._sweep_chunk(receiver, [senders[i] for i in chunk], flat_rows, plan, frozen)
        return self._scatter(out).cpu()

    def _sender_chunks(self, senders: list[Sender], rows_per_sender: int) -> list[list[int]]:
        size = max(1, self.max_rows // max(1, rows_per_sender))
        return [list(range(i, min(i + size, len(senders)))) for i in range(0, len(senders), size)]

    def _sweep_chunk(
        self, receiver: Receiver, senders: list[Sender], flat_rows: Tensor, plan, frozen: bool
    ) -> Tensor:
        """[S, N] in flat order."""
        targets = [self.n_layers] if receiver.is_logits else receiver.layers
        masks = torch.stack([self._mask(s.positions)[flat_rows] for s in senders]).unsqueeze(-1)
        deltas, touched = pass_c(self.rows, self.cache, senders, flat_rows, masks, targets, frozen)
        first = min(min([L for L, _ in s.heads] + list(s.mlps)) for s in senders)
        self._add(len(senders) * flat_rows.shape[0], 1, max(targets) - first)
        out = self.ld_clean.expand(len(senders), -1).clone()
        live = [i for i, t in enumerate(touched) if t]
        if not live:
            return out
        new_in = {t: self.cache.resid_pre[t][flat_rows][None] + deltas[t][live] for t in targets}
        if plan is None:
            out[live] = self.rows.answer_diff(new_in[self.n_layers], self.correct, self.incorrect)
        else:
            out[live] = pass_d(self.rows, self.cache, receiver, new_in, plan, self.correct, self.incorrect)
            self._add(len(live) * plan.src.shape[0], 1, self.n_layers - min(receiver.layers))
        return out

    def _add(self, rows: int, positions: int, layers: int) -> None:
        if self.work is not None:
            self.work.add(rows, positions, layers)


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
