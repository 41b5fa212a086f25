"""Forward passes shared by the analyses: per length group, capturing only what is needed.

Prompts of different token lengths run as separate batches (never padded), exactly as
in the engines (:func:`circuitspec.patching.exact.dataset_groups`). A capture keeps a hook's
activation either whole or only at one position per prompt (END, S2, ...), which keeps
memory small: SmolLM2's per-head ``hook_result`` for 32 prompts is 400 MB whole but
13 MB at END.

Final-norm convention: the bridge in compatibility mode folds the final norm's weights
into ``W_U``, so ``logits = norm(x) @ W_U + b_U`` with ``norm(x) = x / scale`` (RMSNorm)
or ``(x - mean(x)) / scale`` (LayerNorm). Freezing ``scale`` at the clean run's value
makes the map from residual to logit difference linear, so contributions add up.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from circuitspec.bridge.hooks import UNEMBED_IN, capture_into, take_rows
from circuitspec.patching.types import Group, answer_diff, dataset_groups

if TYPE_CHECKING:
    from circuitspec.data.dataset import Dataset

__all__ = ["Group", "capture", "dataset_groups", "end_logit_diff", "frozen_norm", "is_rms",
           "logit_direction"]


def capture(
    bridge: Any,
    tokens: Tensor,
    *,
    whole: Iterable[str] = (),
    at: dict[str, Tensor] | None = None,
    end: Tensor | None = None,
    hooks: list[tuple[str, Any]] | None = None,
    grad: bool = False,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Run ``tokens``; return END logits [batch, vocab] and the captured activations.

    ``whole`` names hooks kept whole; ``at`` maps ``"hook@POS"`` keys to a [batch]
    position index and keeps only that slice (the hook's position axis must be 1).
    Extra ``hooks`` (patches) run before the captures. Without ``grad`` nothing is
    recorded for autograd.
    """
    store: dict[str, Tensor] = {}
    fwd: list[tuple[str, Any]] = list(hooks or [])
    for name in whole:
        fwd.append((name, capture_into(store, name)))
    for key, rows in (at or {}).items():
        fwd.append((key.split("@")[0], capture_into(store, key, rows)))
    if end is not None:
        fwd.append((UNEMBED_IN, take_rows(end)))
    with torch.set_grad_enabled(grad):
        logits = bridge.run_with_hooks(tokens, fwd_hooks=fwd)
    logits = logits[:, 0] if end is not None else logits[:, -1]
    return logits, store


def end_logit_diff(logits: Tensor, group: Group) -> Tensor:
    """Per-prompt logit(correct) - logit(incorrect) from END logits [batch, vocab]."""
    return answer_diff(logits, group.correct, group.incorrect)


def is_rms(bridge: Any) -> bool:
    return "RMS" in type(bridge.ln_final).__name__


def frozen_norm(x: Tensor, scale: Tensor, rms: bool) -> Tensor:
    """The final norm with its scale frozen: linear in x (weights are folded into W_U)."""
    if not rms:
        x = x - x.mean(-1, keepdim=True)
    return x / scale


def logit_direction(bridge: Any, group: Group) -> tuple[Tensor, Tensor]:
    """Per prompt, W_U[:, correct] - W_U[:, incorrect] [batch, d_model] and the b_U difference."""
    w_u = bridge.W_U
    direction = (w_u[:, group.correct] - w_u[:, group.incorrect]).T
    b_u = getattr(bridge, "b_U", None)
    bias = (b_u[group.correct] - b_u[group.incorrect]) if b_u is not None else torch.zeros(
        len(direction), device=direction.device)
    return direction.detach(), bias.detach()


def groups_of(dataset: Dataset, bridge: Any) -> list[Group]:
    """The dataset's length groups on the bridge's device (where its activations are)."""
    return dataset_groups(dataset, bridge.W_U.device)
