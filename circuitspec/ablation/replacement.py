"""The ablation type, applied: what an ablated head's output (and an ablated MLP's) becomes.

- ``mean``: the head's z averaged per position over a separate pool of corrupted (ABC)
  prompts, one mean per token layout (:mod:`circuitspec.ablation.mean_pool`; what ``verify``
  uses), or, without a pool, over the corrupted prompts of the same template in the
  dataset (Wang et al. 2022, section 4);
- ``resample``: the head's z on the paired corrupted prompt (as ACDC does);
- ``zero``: zero.

:func:`replacements` returns, per length group of the dataset, the replacement of every
layer's ``hook_z`` and ``hook_mlp_out``; :class:`~circuitspec.ablation.node.AblationRunner`
writes them wherever a keep-set ablates.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from circuitspec.ablation.mean_pool import MeanPool, layout_key
from circuitspec.errors import InvalidArgument

if TYPE_CHECKING:
    import torch

    from circuitspec.data.dataset import Dataset

__all__ = ["ABLATIONS", "AblationKind", "replacements", "template_means"]

AblationKind = Literal["mean", "resample", "zero"]
ABLATIONS: tuple[str, ...] = ("mean", "resample", "zero")

Activations = tuple[list["torch.Tensor"], list["torch.Tensor"]]  # per layer: z, MLP output
Capture = Callable[["torch.Tensor"], Activations]


def replacements(
    ablation: str, dataset: Dataset, groups: list[list[int]], capture: Capture,
    mean_pool: MeanPool | None, n_layers: int, device: Any,
) -> list[Activations]:
    """Per length group (``groups``: prompt indices), the per-layer replacement of z and of the
    MLP output under ``ablation``; ``capture`` runs the model on token ids and returns both."""
    import torch

    ds = dataset
    corrupt: dict[int, Activations] = {}
    if ablation == "resample" or (ablation == "mean" and mean_pool is None):
        for gi, idx in enumerate(groups):
            toks = torch.tensor([ds.corrupt[i] for i in idx], dtype=torch.long, device=device)
            corrupt[gi] = capture(toks)
    means = template_means(ds, groups, corrupt, n_layers) if corrupt and ablation == "mean" else {}
    out: list[Activations] = []
    for gi, idx in enumerate(groups):
        n = len(idx)
        if ablation == "zero":
            zero = torch.zeros((), device=device)
            z_repl, mlp_repl = [zero] * n_layers, [zero] * n_layers
        elif ablation == "resample":
            z_repl, mlp_repl = corrupt[gi]
        elif mean_pool is not None:
            # One mean per token layout (length and named positions): prompts of one
            # length may have their names at different indices.
            keys = [layout_key(ds, i) for i in idx]
            if len(set(keys)) == 1:
                zs, ms = mean_pool.mean_for(keys[0])
                z_repl = [z.to(device).expand(n, *z.shape) for z in zs]
                mlp_repl = [m.to(device).expand(n, *m.shape) for m in ms]
            else:
                per = [mean_pool.mean_for(k) for k in keys]
                z_repl = [torch.stack([p[0][L] for p in per]).to(device) for L in range(n_layers)]
                mlp_repl = [torch.stack([p[1][L] for p in per]).to(device) for L in range(n_layers)]
        else:
            tids = [ds.template[i] for i in idx]
            z_repl = [torch.stack([means[t][0][L] for t in tids]) for L in range(n_layers)]
            mlp_repl = [torch.stack([means[t][1][L] for t in tids]) for L in range(n_layers)]
        out.append((z_repl, mlp_repl))
    return out


def template_means(dataset: Dataset, groups: list[list[int]], corrupt: dict[int, Activations],
                   n_layers: int) -> dict[int, Activations]:
    """Per template: the corrupted z (and MLP output) averaged over its prompts, per position."""
    import torch

    rows: dict[int, list[tuple[int, int]]] = {}  # template -> (group, row)
    for gi, idx in enumerate(groups):
        for r, i in enumerate(idx):
            rows.setdefault(dataset.template[i], []).append((gi, r))
    means = {}
    for t, members in rows.items():
        if len({gi for gi, _ in members}) > 1:
            raise InvalidArgument(
                f"template {t} has prompts of different token lengths, so its positions do "
                "not align and a per-position mean is undefined; give each length its own "
                "template id"
            )
        gi = members[0][0]
        sel = torch.tensor([r for _, r in members], device=corrupt[gi][0][0].device)
        zs, mlps = corrupt[gi]
        means[t] = (
            [zs[L][sel].mean(0) for L in range(n_layers)],
            [mlps[L][sel].mean(0) for L in range(n_layers)],
        )
    return means
