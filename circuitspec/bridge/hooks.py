"""Hook names and the one set of hook factories every stage patches the bridge with.

Names: :func:`z_hook` (a layer's per-head attention output before ``W_O``),
:func:`mlp_out_hook`, :func:`resid_pre_hook`, and :data:`UNEMBED_IN`. Factories return
TransformerLens forward hooks ``hook(activation, hook) -> activation``:
:func:`capture_into` (record a copy), :func:`replace_with` (return a fixed value),
:func:`add_delta`, :func:`keep_or_replace` (stacked keep-set copies, the ablation
mechanism) and :func:`take_rows` (only the END row reaches the unembedding).
:func:`hooked` adds hooks for the duration of a block and always removes them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor

__all__ = [
    "UNEMBED_IN", "add_delta", "capture_into", "hooked", "keep_or_replace", "mlp_out_hook", "pick",
    "replace_with", "resid_pre_hook", "take_rows", "z_hook",
]

Hook = Callable[..., Any]
UNEMBED_IN = "unembed.hook_in"


def z_hook(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_z"


def mlp_out_hook(layer: int) -> str:
    return f"blocks.{layer}.hook_mlp_out"


def resid_pre_hook(layer: int) -> str:
    return f"blocks.{layer}.hook_resid_pre"


@contextmanager
def hooked(bridge: Any, fwd_hooks: list[tuple[str, Hook]]) -> Iterator[Any]:
    """Add forward hooks for the duration of the block; always removed afterwards."""
    with bridge.hooks(fwd_hooks=fwd_hooks):
        yield bridge


def pick(x: Tensor, rows: Tensor) -> Tensor:
    """``x[b, rows[b]]`` for activations with the position on axis 1."""
    import torch

    return x[torch.arange(x.shape[0], device=x.device), rows]


def capture_into(store: MutableMapping[Any, Tensor], key: Any, rows: Tensor | None = None) -> Hook:
    """Record a detached copy of the activation (only position ``rows[b]`` of each row, when
    given) under ``store[key]``; the activation passes on unchanged."""

    def hook(x: Tensor, hook: Any) -> Tensor:
        store[key] = (x if rows is None else pick(x, rows)).detach().clone()
        return x

    return hook


def replace_with(value: Tensor) -> Hook:
    """The activation becomes ``value``."""

    def hook(x: Tensor, hook: Any) -> Tensor:
        return value

    return hook


def add_delta(delta: Tensor) -> Hook:
    """The activation plus ``delta``."""

    def hook(x: Tensor, hook: Any) -> Tensor:
        return x + delta

    return hook


def keep_or_replace(keep_mask: Tensor, replacement: Tensor) -> Hook:
    """Keep the activation where ``keep_mask`` and take ``replacement`` elsewhere.

    The activation is ``[k * n, ...]``: k stacked copies of n prompts; ``keep_mask`` is
    ``[k, ...]`` broadcastable over the copy, ``replacement`` is ``[n, ...]`` or a scalar.
    """
    import torch

    def hook(x: Tensor, hook: Any) -> Tensor:
        k = keep_mask.shape[0]
        view = x.reshape(k, x.shape[0] // k, *x.shape[1:])
        return torch.where(keep_mask, view, replacement.to(x.dtype)).reshape(x.shape)

    return hook


def take_rows(end: Tensor) -> Hook:
    """At :data:`UNEMBED_IN`: only position ``end[b]`` of each row reaches the unembedding, so
    the logits are ``[rows, 1, vocab]`` instead of every position's."""

    def hook(x: Tensor, hook: Any) -> Tensor:
        return pick(x, end).unsqueeze(1)

    return hook
