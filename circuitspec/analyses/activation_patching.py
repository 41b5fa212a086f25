"""Activation patching, in the denoising direction, normalised like the notebook.

Each *variant* runs the **corrupted** prompts with some activations set to their
values on the paired **clean** prompt (TransformerLens's ``get_act_patch_*``, as the
Pythia notebook calls them). The score is

    (mean patched logit diff - mean corrupted) / (mean clean - mean corrupted)

so 0 = the patch restores nothing (corrupted run), 1 = it restores the clean run.

Prompts of different templates have different lengths, so positions are the task's
named ones (IO, S1, S1+1, S2, END, ...) rather than token indices, plus ``ALL``.
Many variants share one forward pass: the prompts are stacked once per variant, each
copy with its own mask (``max_rows`` rows per pass). On grouped-query models ``k``
and ``v`` are patched per key/value head, since one query head's keys cannot be
changed alone at ``hook_k``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor

from circuitspec.analyses.grid import Grid, head_grid, head_label
from circuitspec.analyses.row_resume import resumed_scores
from circuitspec.analyses.runs import Group, capture, end_logit_diff, groups_of
from circuitspec.analyses.variants import Patch, Variant
from circuitspec.output.console import counted_bar

if TYPE_CHECKING:
    from circuitspec.bridge.loading import LoadedModel
    from circuitspec.data.dataset import Dataset

Kind = Literal[
    "resid_pre", "attn_out", "mlp_out", "head_out", "head_out_by_pos", "q", "k", "v", "pattern"
]
KINDS: tuple[str, ...] = (
    "resid_pre", "attn_out", "mlp_out", "head_out", "head_out_by_pos", "q", "k", "v", "pattern"
)
_HOOK = {
    "resid_pre": "blocks.{}.hook_resid_pre", "attn_out": "blocks.{}.hook_attn_out",
    "mlp_out": "blocks.{}.hook_mlp_out", "head_out": "blocks.{}.attn.hook_z",
    "head_out_by_pos": "blocks.{}.attn.hook_z", "q": "blocks.{}.attn.hook_q",
    "k": "blocks.{}.attn.hook_k", "v": "blocks.{}.attn.hook_v",
    "pattern": "blocks.{}.attn.hook_pattern",
}
NOTE = ("denoising: corrupted run with clean activations patched in; "
        "(patched - corrupted) / (clean - corrupted): 0 = corrupted, 1 = clean")



def named_positions(dataset: Dataset) -> list[str]:
    """The dataset's named positions in their usual order in the prompt."""
    pos = dataset.positions
    return sorted(pos, key=lambda n: (sum(pos[n]) / len(pos[n]), n))


@torch.no_grad()
def patch_variants(
    model: LoadedModel,
    dataset: Dataset,
    variants: Sequence[Variant],
    *,
    max_rows: int = 256,
    progress: bool = False,
    description: str = "activation patching",
    resume: bool = True,
) -> Tensor:
    """Normalised score of each variant (an empty variant scores 0).

    With ``resume`` (and an architecture :mod:`.resume` reproduces) each variant is
    recomputed only from its patched layer and position on; otherwise every variant
    is a full forward pass of the stacked prompts.
    """
    if resume:
        with counted_bar(description, len(variants) * len(dataset.length_groups()), progress) as bar:
            fast = resumed_scores(model, dataset, variants, bar=bar)
        if fast is not None:
            sums_, clean_, corrupt_ = fast
            n = len(dataset)
            return (sums_ / n - corrupt_ / n) / (clean_ / n - corrupt_ / n)
    bridge = model.bridge
    hooks_used = sorted({p.hook for v in variants for p in v})
    sums = torch.zeros(len(variants), device="cpu")
    clean_sum = corrupt_sum = 0.0
    groups = groups_of(dataset, bridge)
    with counted_bar(description, len(variants) * len(groups), progress) as bar:
        for group in groups:
            end, n = group.positions["END"], group.clean.shape[0]
            logits_c, clean = capture(bridge, group.clean, whole=hooks_used, end=end)
            logits_r, _ = capture(bridge, group.corrupt, end=end)
            clean_sum += float(end_logit_diff(logits_c, group).sum())
            corrupt_sum += float(end_logit_diff(logits_r, group).sum())
            per_pass = max(1, max_rows // n)
            for k0 in range(0, len(variants), per_pass):
                chunk = variants[k0 : k0 + per_pass]
                hooks = [(name, _stacked_patch(group, clean[name], chunk, name))
                         for name in hooks_used if any(p.hook == name for v in chunk for p in v)]
                logits = _run(bridge, group.corrupt.repeat(len(chunk), 1), end.repeat(len(chunk)),
                              hooks)
                rows = torch.arange(logits.shape[0], device=logits.device)
                ld = (logits[rows, group.correct.repeat(len(chunk))]
                      - logits[rows, group.incorrect.repeat(len(chunk))])
                sums[k0 : k0 + len(chunk)] += ld.reshape(len(chunk), n).sum(1).cpu()
                bar.advance(len(chunk))
    n_all = len(dataset)
    clean_mean, corrupt_mean = clean_sum / n_all, corrupt_sum / n_all
    return (sums / n_all - corrupt_mean) / (clean_mean - corrupt_mean)


def _run(bridge: Any, tokens: Tensor, end: Tensor, hooks: list) -> Tensor:
    logits, _ = capture(bridge, tokens, end=end, hooks=hooks)
    return logits


def _stacked_patch(group: Group, clean: Tensor, chunk: Sequence[Variant], name: str) -> Any:
    """A hook on ``name`` for len(chunk) stacked copies: copy k takes clean where its mask is set."""
    n = clean.shape[0]
    is_pattern = name.endswith("hook_pattern")
    masks = torch.zeros(len(chunk), *clean.shape, dtype=torch.bool, device=clean.device)
    rows = torch.arange(n, device=clean.device)
    for k, variant in enumerate(chunk):
        for p in variant:
            if p.hook != name:
                continue
            if is_pattern:  # [b, head, q, k]: always every position
                masks[k][:, p.head if p.head is not None else slice(None)] = True
                continue
            pos = (group.positions[p.position] if p.position is not None else None)
            head = p.head if p.head is not None else slice(None)
            target = masks[k]
            if clean.dim() == 4:  # [b, pos, head, d]
                if pos is None:
                    target[:, :, head] = True
                else:
                    target[rows, pos, head] = True
            elif pos is None:  # [b, pos, d_model]
                target[:] = True
            else:
                target[rows, pos] = True

    def hook(x: Tensor, hook: Any) -> Tensor:
        view = x.reshape(len(chunk), n, *x.shape[1:])
        return torch.where(masks, clean.to(x.dtype), view).reshape(x.shape)

    return hook


def activation_patching(
    model: LoadedModel, dataset: Dataset, kind: Kind, *, max_rows: int = 256,
    progress: bool = False,
) -> Grid:
    """One of the notebook's activation-patching maps as a labelled grid."""
    if kind not in _HOOK:
        raise ValueError(f"unknown activation patching {kind!r}; choose from {', '.join(KINDS)}")
    info = model.info
    hook = _HOOK[kind]
    layers = range(info.n_layers)
    if kind in ("resid_pre", "attn_out", "mlp_out"):
        cols = [*named_positions(dataset), "ALL"]
        variants = [(Patch(hook.format(lay), None, None if c == "ALL" else c),)
                    for lay in layers for c in cols]
        values = patch_variants(model, dataset, variants, max_rows=max_rows, progress=progress,
                                description=f"patching {kind}")
        return Grid(f"patch_{kind}", values.reshape(len(layers), len(cols)),
                    tuple(str(lay) for lay in layers), tuple(cols), "layer", "position", NOTE)
    n_slots = info.n_kv_heads if kind in ("k", "v") else info.n_heads
    if kind == "head_out_by_pos":
        cols = named_positions(dataset)
        variants = [(Patch(hook.format(lay), h, c),)
                    for lay in layers for h in range(n_slots) for c in cols]
        values = patch_variants(model, dataset, variants, max_rows=max_rows, progress=progress,
                                description="patching heads by position")
        rows = tuple(head_label(lay, h) for lay in layers for h in range(n_slots))
        return Grid("patch_head_out_by_pos", values.reshape(len(rows), len(cols)), rows,
                    tuple(cols), "head", "position", NOTE + "; head output = hook_z")
    variants = [(Patch(hook.format(lay), h),) for lay in layers for h in range(n_slots)]
    values = patch_variants(model, dataset, variants, max_rows=max_rows, progress=progress,
                            description=f"patching {kind}")
    note = NOTE + ("; per key/value head" if n_slots != info.n_heads else "")
    return head_grid(f"patch_{kind}", values.reshape(info.n_layers, n_slots), note)


def compare_heads(model: LoadedModel, x: Grid, y: Grid) -> Grid:
    """Two per-head patching grids side by side (rows: heads), for the notebook's scatter plots.

    A per key/value head grid (k, v on grouped-query models) is repeated for every query
    head that reads that key/value head.
    """
    info = model.info

    def per_query_head(g: Grid) -> Tensor:
        values = g.values
        if values.shape[1] != info.n_heads:
            values = values.repeat_interleave(info.n_heads // values.shape[1], dim=1)
        return values.flatten()

    name = f"patch_head_out_vs_{x.name.removeprefix('patch_')}"
    rows = tuple(head_label(lay, h) for lay in range(info.n_layers) for h in range(info.n_heads))
    what = x.name.removeprefix("patch_")
    return Grid(name, torch.stack([per_query_head(x), per_query_head(y)], 1), rows,
                (what, "head output"), "head", "patched activation",
                NOTE + ("; k/v per key/value head, repeated for its query heads"
                        if x.values.shape[1] != info.n_heads else ""))
