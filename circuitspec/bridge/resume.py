"""Resume a bridge forward pass at a layer, skipping the blocks before it.

``TransformerBridge.forward(resid, start_at_layer=k)`` swaps ``resid`` in as the input
of block k, but the Hugging Face forward that drives it still runs blocks 0..k-1 and
throws their output away, so it saves nothing. The blocks live in one ``ModuleList``
of the wrapped Hugging Face model (the bridge's own block wrappers, hooks included);
:func:`resumed_at` lets that list hold only blocks k.. for the duration of the pass.
Each block keeps its own index, so hook names, ``start_at_layer``'s injection and
``stop_at_layer`` behave as in a full pass. Models whose blocks are not found that
way are run in full (:func:`can_resume` says which).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["can_resume", "resumed_at"]


def _block_list(bridge: Any) -> tuple[Any, str, Any] | None:
    """(parent module, attribute, ModuleList) holding exactly the bridge's blocks, or None."""
    import torch

    blocks = list(getattr(bridge, "blocks", ()))
    hf = getattr(bridge, "original_model", None)
    if not blocks or hf is None:
        return None
    for module in hf.modules():
        for name, child in module.named_children():
            if (isinstance(child, torch.nn.ModuleList) and len(child) == len(blocks)
                    and all(a is b for a, b in zip(child, blocks, strict=True))):
                return module, name, child
    return None


def can_resume(bridge: Any) -> bool:
    """Whether :func:`resumed_at` can skip blocks on this bridge."""
    return _block_list(bridge) is not None


@contextmanager
def resumed_at(bridge: Any, layer: int) -> Iterator[None]:
    """Within the block, a forward with ``start_at_layer=layer`` runs blocks ``layer..`` only."""
    import torch

    found = _block_list(bridge)
    if found is None or layer == 0:
        yield
        return
    parent, name, full = found
    # Models with layers of several kinds (Gemma 3: local and global) pick each block's mask
    # and rotary embedding by its index in the loop, ``config.layer_types[i]``; with the list
    # cut, block ``layer + i`` sits at index i, so the kinds are cut the same way.
    configs = _layer_type_configs(bridge, len(full))
    setattr(parent, name, torch.nn.ModuleList(list(full)[layer:]))
    for config, kinds in configs:
        config.layer_types = kinds[layer:]
    try:
        yield
    finally:
        setattr(parent, name, full)
        for config, kinds in configs:
            config.layer_types = kinds


def _layer_type_configs(bridge: Any, n_layers: int) -> list[tuple[Any, list[str]]]:
    """The wrapped model's configs that list a kind per layer, each once, with its list."""
    out: dict[int, tuple[Any, list[str]]] = {}
    for module in bridge.original_model.modules():
        config = getattr(module, "config", None)
        kinds = getattr(config, "layer_types", None)
        if isinstance(kinds, (list, tuple)) and len(kinds) == n_layers:
            out.setdefault(id(config), (config, list(kinds)))
    return list(out.values())
