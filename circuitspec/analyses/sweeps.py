"""Path-patching sweeps: every sender head, alone, into one receiver group.

The effect of sender s is the path-patching effect of the edge s -> receivers
(via q, k or v at a named position, or the logits), as defined in the design brief:
``(M_patched - M_clean) / (M_clean - M_corrupt)``: 0 = no effect, -1 = the whole
clean-to-corrupted gap. Only heads in layers before the first receiver can send.

``method="exact"`` sweeps every sender through the engine
:func:`~circuitspec.patching.engine.select_engine` chooses (the fast one where it
reproduces the model).

``method="attribution"`` is a first-order estimate of the *direct* path (edge
attribution patching, Syed et al. 2023): one clean forward and backward pass give
the gradient of the metric with respect to the receivers' q/k/v input at the
position, restricted to the receiver heads by back-propagating only through their
``hook_z``; each sender's estimate is that gradient dotted with the sender's output
change (corrupted minus clean ``hook_result``) at the position. All senders cost
one pass, so it screens a whole model in seconds; ``confirm=k`` re-runs the k
strongest with the exact engine and stores those numbers in ``extra["exact"]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor

from circuitspec.analyses.grid import Grid, head_grid, head_label, top_heads
from circuitspec.analyses.runs import Group, capture, end_logit_diff, groups_of
from circuitspec.output.console import counted_bar
from circuitspec.patching.engine import PatchEngine, select_engine
from circuitspec.patching.types import LOGITS, Head, Receiver, Sender

if TYPE_CHECKING:
    from circuitspec.bridge.loading import LoadedModel
    from circuitspec.data.dataset import Dataset



def default_senders(model: LoadedModel, receivers: Sequence[Head]) -> list[Head]:
    """Every head in a layer before the first receiver (every head for the logits)."""
    limit = min((lay for lay, _ in receivers), default=model.info.n_layers)
    return [(lay, h) for lay in range(limit) for h in range(model.info.n_heads)]


def path_patch_sweep(
    model: LoadedModel,
    dataset: Dataset,
    receivers: Sequence[Head],
    via: Literal["q", "k", "v"] | None,
    at: str,
    *,
    senders: Sequence[Head] | None = None,
    method: Literal["exact", "attribution"] = "exact",
    confirm: int = 0,
    engine: Any = None,
    progress: bool = True,
    chunk: int = 16,
) -> Grid:
    """[layers, heads] effect of each sender into ``receivers`` (empty: the logits); NaN elsewhere."""
    senders = list(senders) if senders is not None else default_senders(model, receivers)
    target = "logits" if not receivers else "+".join(head_label(*r) for r in receivers) + f".{via}"
    values = torch.full((model.info.n_layers, model.info.n_heads), math.nan, device="cpu")  # a result
    extra: dict[str, Any] = {"receivers": [head_label(*r) for r in receivers], "via": via, "at": at,
                             "method": method}
    if senders and method == "attribution":
        effects = _attribution(model, dataset, list(receivers), via, at, senders)
    elif senders:
        engine = engine or select_engine(model, dataset)
        extra["engine"] = engine.name
        effects = _exact(engine, list(receivers), via, at, senders, progress, chunk,
                         f"senders -> {target}@{at}")
    for (layer, head), e in zip(senders, effects.tolist() if senders else [], strict=True):
        values[layer, head] = e
    grid = head_grid(f"path_{target}@{at}", values, "path-patching effect (M_patched - M_clean) / "
                     f"(M_clean - M_corrupt) of each sender alone into {target} at {at}; "
                     f"method {method}", **extra)
    if confirm and senders and method == "attribution":
        engine = engine or select_engine(model, dataset)
        best = top_heads(grid, min(confirm, len(senders)), largest=False)
        exact = _exact(engine, list(receivers), via, at, best, progress, chunk, "confirming")
        grid.extra["exact"] = {head_label(*h): round(float(e), 6) for h, e in zip(best, exact, strict=True)}
        grid.extra["engine"] = engine.name
    return grid


def _exact(
    engine: PatchEngine, receivers: list[Head], via: str | None, at: str, senders: Sequence[Head],
    progress: bool, chunk: int, description: str,
) -> Tensor:
    receiver = Receiver(heads=tuple(receivers), via=via, at=at) if receivers else LOGITS  # type: ignore[arg-type]
    clean, corrupt = engine.baselines()
    m_clean, gap = clean.mean(), clean.mean() - corrupt.mean()
    out = torch.empty(len(senders), device="cpu")  # the engines answer on the CPU
    with counted_bar(description, len(senders), progress) as bar:
        for i in range(0, len(senders), chunk):
            part = [Sender(heads=(h,)) for h in senders[i : i + chunk]]
            patched = engine.sweep(receiver, part)
            out[i : i + len(part)] = (patched.mean(1) - m_clean) / gap
            bar.advance(len(part))
    return out


def _attribution(
    model: LoadedModel, dataset: Dataset, receivers: list[Head], via: str | None, at: str,
    senders: Sequence[Head],
) -> Tensor:
    bridge = model.bridge
    sender_layers = sorted({lay for lay, _ in senders})
    total = torch.zeros(len(senders), device=bridge.W_U.device)
    clean_sum = corrupt_sum = 0.0
    for group in groups_of(dataset, bridge):
        pos = group.positions[at]
        names = {f"blocks.{lay}.attn.hook_result@{at}": pos for lay in sender_layers}
        logits_r, corrupt = capture(bridge, group.corrupt, at=names, end=group.positions["END"])
        corrupt_sum += float(end_logit_diff(logits_r, group).sum())
        grad, clean, ld = _receiver_gradient(bridge, group, receivers, via, pos, names)
        clean_sum += float(ld.sum())
        for i, (layer, head) in enumerate(senders):
            key = f"blocks.{layer}.attn.hook_result@{at}"
            delta = corrupt[key][:, head] - clean[key][:, head]  # [b, d_model]
            total[i] += (grad * delta).sum()
    gap = (clean_sum - corrupt_sum) / len(dataset)
    return (total / len(dataset) / gap).cpu()


def _receiver_gradient(
    bridge: Any, group: Group, receivers: list[Head], via: str | None, pos: Tensor,
    names: dict[str, Tensor],
) -> tuple[Tensor, dict[str, Tensor], Tensor]:
    """d(sum of logit diffs)/d(receiver input at pos) [b, d_model], summed over receivers."""
    live: dict[str, Tensor] = {}
    store: dict[str, Tensor] = {}

    def keep(key: str) -> Any:
        def hook(x: Tensor, hook: Any) -> Tensor:
            live[key] = x
            return x

        return hook

    def start(x: Tensor, hook: Any) -> Tensor:
        return x.detach().requires_grad_(True)

    layers = sorted({lay for lay, _ in receivers})
    hooks: list[tuple[str, Any]] = [("blocks.0.hook_resid_pre", start)]
    if receivers:
        for lay in layers:
            hooks += [(f"blocks.{lay}.attn.hook_{via}_input", keep(f"x{lay}")),
                      (f"blocks.{lay}.attn.hook_z", keep(f"z{lay}"))]
    else:
        hooks.append(("ln_final.hook_in", keep("x")))
    with torch.enable_grad():
        logits, store = capture(bridge, group.clean, at=names, end=group.positions["END"],
                                hooks=hooks, grad=True)
        ld = end_logit_diff(logits, group)
        metric = ld.sum()
        rows = torch.arange(len(pos), device=pos.device)
        if not receivers:
            (g,) = torch.autograd.grad(metric, live["x"])
            return g[rows, pos].detach(), store, ld.detach()
        g_z = torch.autograd.grad(metric, [live[f"z{lay}"] for lay in layers], retain_graph=True)
        grad = torch.zeros(len(pos), live[f"x{layers[0]}"].shape[-1], device=pos.device)
        for lay, gz in zip(layers, g_z, strict=True):
            heads = [h for la, h in receivers if la == lay]
            z = live[f"z{lay}"]
            surrogate = (gz.detach()[:, :, heads] * z[:, :, heads]).sum()
            (g_x,) = torch.autograd.grad(surrogate, live[f"x{lay}"], retain_graph=True)
            grad += g_x[rows, pos].sum(1)  # [b, slots, d] -> only receiver slots are non-zero
    return grad.detach(), store, ld.detach()
