"""Booting the bridge: a loaded Hugging Face model wrapped in a TransformerBridge with the hooks
circuitspec uses (split q/k/v inputs, per-head results), and its placement over devices."""

from __future__ import annotations

from typing import Any

from circuitspec.errors import ModelLoadError

__all__ = ["boot_bridge", "placement_kwargs"]


def placement_kwargs(device_map: str | dict[str, str | int] | None, n_devices: int | None) -> dict[str, Any]:
    """``from_pretrained`` keyword arguments that spread the weights over devices ({} for one device)."""
    if device_map is None and (n_devices is None or n_devices <= 1):
        return {}
    from transformer_lens.utilities.multi_gpu import resolve_device_map

    try:
        resolved, max_memory = resolve_device_map(n_devices, device_map, None, None)
    except ValueError as exc:
        raise ModelLoadError(f"cannot place the model (device_map={device_map!r}, n_devices={n_devices}): "
                             f"{exc}") from None
    out: dict[str, Any] = {"device_map": resolved}
    if max_memory is not None:
        out["max_memory"] = max_memory
    return out


def boot_bridge(name: str, hf: Any, tokenizer: Any, *, device: str | None = "cpu", dtype: Any = None) -> Any:
    """Wrap a loaded HF model in a TransformerBridge with the hooks circuitspec uses, on
    ``device`` (None: where ``hf``'s weights were placed)."""
    import logging

    import torch
    from transformer_lens.model_bridge import TransformerBridge

    if device is not None:
        # TransformerBridge records a pre-loaded model's device but does not move it: the
        # weights would stay on the CPU under --device cuda.
        hf.to(device)

    # TransformerLens logs its boot notes on the root logger; they are silenced for the boot
    # only, and the caller's logging configuration is restored after.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        bridge = TransformerBridge.boot_transformers(
            name, hf_model=hf, tokenizer=tokenizer, device=device, dtype=dtype or torch.float32
        )
    finally:
        root.setLevel(level)
    bridge.enable_compatibility_mode()
    bridge.set_use_split_qkv_input(True)
    bridge.set_use_attn_result(True)
    bridge.eval()
    return bridge
