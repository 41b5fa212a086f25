"""Logit lens, direct logit attribution (DLA) and the backup-name-mover experiment.

All three read the residual stream at END and project it on the logit-difference
direction ``W_U[:, correct] - W_U[:, incorrect]`` (plus the ``b_U`` difference).

Convention: the final norm's scale is frozen at the clean run's value (the
notebook's ``apply_ln_to_stack``); see :mod:`circuitspec.analyses.runs`. With it
frozen, the components (embeddings, every head's ``hook_result``, each layer's
attention bias, every MLP, the unembedding bias) sum exactly to the model's logit
difference. ``logit_lens(..., scale="recomputed")`` instead applies the real final
norm to each partial residual stream.

Sandwich norms (Gemma 3): a layer's attention writes ``g * a / rms(a)``, with ``a``
the sum of its heads' outputs (plus the output bias) and ``g`` the post-attention
norm's gain. Head h is attributed ``g * a_h / rms(a)``, at the layer's own rms from
the run, so the heads (and the bias) still sum exactly to the layer's write. The
MLP's post-feedforward norm needs nothing: ``hook_mlp_out`` is already after it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor

from circuitspec.ablation.node import AblationRunner
from circuitspec.analyses.grid import Grid, head_grid, head_label
from circuitspec.analyses.runs import (
    Group,
    capture,
    end_logit_diff,
    frozen_norm,
    groups_of,
    is_rms,
    logit_direction,
)
from circuitspec.spec.heads import Head

if TYPE_CHECKING:
    from circuitspec.bridge.loading import LoadedModel
    from circuitspec.data.dataset import Dataset



@torch.no_grad()
def logit_lens(
    model: LoadedModel, dataset: Dataset, *, scale: Literal["frozen", "recomputed"] = "frozen"
) -> Grid:
    """Mean logit difference read from the accumulated residual stream after each layer."""
    bridge, n_layers = model.bridge, model.info.n_layers
    rms = is_rms(bridge)
    names = ["blocks.0.hook_resid_pre"] + [f"blocks.{i}.hook_resid_post" for i in range(n_layers)]
    total = torch.zeros(len(names), device=bridge.W_U.device)
    for group in groups_of(dataset, bridge):
        end = group.positions["END"]
        at = {f"{n}@END": end for n in [*names, "ln_final.hook_scale"]}
        _, acts = capture(bridge, group.clean, at=at, end=end)
        direction, bias = logit_direction(bridge, group)
        for i, name in enumerate(names):
            x = acts[f"{name}@END"]
            normed = (frozen_norm(x, acts["ln_final.hook_scale@END"], rms) if scale == "frozen"
                      else bridge.ln_final(x))
            total[i] += ((normed * direction).sum(-1) + bias).sum()
    values = (total / len(dataset))[None].cpu()
    cols = ("embed", *(f"L{i}" for i in range(n_layers)))
    note = (f"final norm scale {'frozen at the clean run' if scale == 'frozen' else 'recomputed'}"
            "; includes the b_U difference; column Lk = residual stream after layer k")
    return Grid("logit_lens", values, ("logit_diff",), cols, "metric", "layer", note)


@dataclass(frozen=True)
class DLA:
    """Direct logit attribution at END, clean run, final-norm scale frozen."""

    per_head: Grid  # [layers, heads], mean over prompts
    per_layer: Grid  # rows attn (heads + bias), mlp; cols layers
    components: tuple[str, ...]
    per_prompt: Tensor  # [components, prompts]: sums to logit_diff exactly
    logit_diff: Tensor  # [prompts], the model's own


@torch.no_grad()
def direct_logit_attribution(
    model: LoadedModel, dataset: Dataset, *, hooks: Callable[[Group], list] | None = None
) -> DLA:
    """Every component's direct contribution to the logit difference at END.

    ``hooks(group)`` (e.g. an ablation) change the run being decomposed; the frozen scale is
    then that run's own, as in the notebook's ablated cache.
    """
    bridge, n_layers, n_heads = model.bridge, model.info.n_layers, model.info.n_heads
    rms = is_rms(bridge)
    labels = ["embed"]
    for layer in range(n_layers):
        labels += [head_label(layer, h) for h in range(n_heads)]
        labels += [f"attn_bias{layer}", f"MLP{layer}"]
    labels.append("b_U")
    device = bridge.W_U.device
    per_prompt = torch.zeros(len(labels), len(dataset), device=device)
    ld = torch.zeros(len(dataset), device=device)
    for group in groups_of(dataset, bridge):
        end = group.positions["END"]
        names = ["blocks.0.hook_resid_pre", "ln_final.hook_scale"]
        for layer in range(n_layers):
            names += [f"blocks.{layer}.attn.hook_result", f"blocks.{layer}.hook_attn_out",
                      f"blocks.{layer}.hook_mlp_out"]
            if _post_norm(bridge, layer) is not None:
                names.append(f"blocks.{layer}.attn.hook_out")
        logits, acts = capture(bridge, group.clean, at={f"{n}@END": end for n in names}, end=end,
                               hooks=hooks(group) if hooks else None)
        ld[group.index] = end_logit_diff(logits, group)
        direction, bias = logit_direction(bridge, group)
        scale = acts["ln_final.hook_scale@END"]

        def project(x: Tensor, scale: Tensor = scale, direction: Tensor = direction) -> Tensor:
            return (frozen_norm(x, scale[..., None, :] if x.dim() == 3 else scale, rms)
                    * (direction[:, None] if x.dim() == 3 else direction)).sum(-1)

        rows = [project(acts["blocks.0.hook_resid_pre@END"])[None]]
        for layer in range(n_layers):
            result = acts[f"blocks.{layer}.attn.hook_result@END"]  # [b, heads, d_model]
            norm = _post_norm(bridge, layer)
            if norm is not None:
                result = _share_of_norm(norm, result, acts[f"blocks.{layer}.attn.hook_out@END"])
            attn_bias = acts[f"blocks.{layer}.hook_attn_out@END"] - result.sum(1)
            rows += [project(result).T, project(attn_bias)[None],
                     project(acts[f"blocks.{layer}.hook_mlp_out@END"])[None]]
        rows.append(bias[None])
        per_prompt[:, group.index] = torch.cat(rows)
    per_prompt, ld = per_prompt.cpu(), ld.cpu()  # the results leave the device here
    mean = per_prompt.mean(1)
    head_rows = [labels.index(head_label(layer, 0)) for layer in range(n_layers)]
    per_head = torch.stack([mean[i : i + n_heads] for i in head_rows])
    attn = torch.stack([mean[i : i + n_heads + 1].sum() for i in head_rows])
    mlp = torch.stack([mean[labels.index(f"MLP{layer}")] for layer in range(n_layers)])
    note = "END, final-norm scale frozen at this run's value; attn row includes the output bias"
    return DLA(
        per_head=head_grid("dla_heads", per_head, note),
        per_layer=Grid("dla_layers", torch.stack([attn, mlp]), ("attn", "mlp"),
                       tuple(str(i) for i in range(n_layers)), "block", "layer", note),
        components=tuple(labels),
        per_prompt=per_prompt,
        logit_diff=ld,
    )


def _post_norm(bridge: Any, layer: int) -> Any:
    """The post-attention norm of a sandwich-norm block (Gemma 2/3), else None."""
    return getattr(bridge.blocks[layer], "ln1_post", None)


def _share_of_norm(norm: Any, parts: Tensor, whole: Tensor) -> Tensor:
    """Each part's share of ``norm(whole)``, at whole's own scale: parts [b, k, d], whole [b, d].

    An RMS norm is ``g * x / rms(x)`` with ``rms(x) = sqrt(mean(x^2) + eps)``, so
    ``norm(x) * rms(x) = g * x`` for any x: this recovers ``g * part`` through the
    norm module itself (whatever form its gain takes), then divides by rms(whole).
    """
    eps = getattr(norm, "eps", None)
    eps = float(eps if eps is not None else getattr(norm.original_component, "eps", 1e-6))

    def rms(x: Tensor) -> Tensor:
        return (x.pow(2).mean(-1, keepdim=True) + eps).sqrt()

    return norm(parts) * rms(parts) / rms(whole)[:, None]


def mean_ablation_hooks(
    model: LoadedModel, dataset: Dataset, heads: Sequence[Head]
) -> Callable[[Group], list]:
    """Per length group, hook_z replacements setting ``heads`` to their corrupted mean.

    The mean is over the corrupted prompts of the same template, per position (Wang et
    al. 2022's mean ablation over the ABC distribution; :mod:`circuitspec.ablation.node`).
    """

    # The corrupted mean of the prompts being explained (Wang et al.'s own): an exploration
    # aid that judges nothing, so the in-sample mean is meant here.
    runner = AblationRunner(model, dataset, "mean", in_sample=True)
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        by_layer.setdefault(layer, []).append(head)

    def for_group(group: Group) -> list:
        hooks = []
        for layer, here in by_layer.items():
            repl = torch.stack([runner.z_replacement(int(i), layer) for i in group.index])
            hooks.append((f"blocks.{layer}.attn.hook_z", _set_heads(repl, here)))
        return hooks

    return for_group


def _set_heads(repl: Tensor, heads: list[int]) -> Callable:
    def hook(z: Tensor, hook: object) -> Tensor:
        z = z.clone()
        z[:, :, heads] = repl[:, :, heads].to(z.dtype)
        return z

    return hook


@torch.no_grad()
def backup_name_movers(
    model: LoadedModel, dataset: Dataset, ablate: Sequence[Head], *, before: DLA | None = None
) -> Grid:
    """Every head's DLA before and after mean-ablating ``ablate`` (rows: heads).

    Heads whose DLA rises when the name movers are knocked out are backup name movers.
    """
    before = before or direct_logit_attribution(model, dataset)
    after = direct_logit_attribution(model, dataset, hooks=mean_ablation_hooks(model, dataset, ablate))
    n_layers, n_heads = before.per_head.values.shape
    rows = tuple(head_label(lay, h) for lay in range(n_layers) for h in range(n_heads))
    values = torch.stack([before.per_head.values.flatten(), after.per_head.values.flatten()], 1)
    return Grid(
        "backup_name_movers", values, rows, ("before", "after"), "head", "run",
        "DLA at END; after = the listed heads' hook_z mean-ablated over corrupted prompts "
        "(per template and position), final-norm scale of each run",
        {"ablated": [head_label(*h) for h in ablate],
         "logit_diff_before": float(before.logit_diff.mean()),
         "logit_diff_after": float(after.logit_diff.mean())},
    )
