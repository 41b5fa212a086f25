"""Where a run's tensors live: the device a run asks for, checked before anything loads, and
the size of one batched pass on it.

Every stage computes on the model's device (its weights', the caches', the engines') and
hands back CPU tensors at its boundary, where the statistics start (numpy, seeded on the
CPU, so the same seed gives the same nulls and intervals on any device).

Batch sizes: on the CPU the passes keep the sizes measured on the 2-core machine (the
callers' defaults). On a CUDA device a pass may hold more: :func:`tokens_for_memory` sizes
it from the free device memory and the model's width and depth, never below the CPU size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from circuitspec.errors import CircuitSpecError, HypothesisError

if TYPE_CHECKING:
    from circuitspec.spec.schema import Hypothesis

__all__ = ["check_device", "device_problem", "pass_size", "tokens_for_memory"]

FLOAT_BYTES = 4  # float32
CACHED_PER_LAYER = 8  # d_model-wide values per token and layer that a pass keeps (z, writes, residuals)
TRANSIENT = 32  # d_model-wide values per token alive within one layer (q/k/v, MLP hidden, norms)
MEMORY_SHARE = 4  # a pass may take 1/4 of the free memory: caches, the allocator and other passes keep the rest
MAX_PASS = 1 << 20


def device_problem(device: str) -> str | None:
    """Why ``device`` cannot run here (None when it can): not a torch device, or a CUDA
    device this machine does not have."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        return f"{device!r}: not a torch device; use cpu, cuda or cuda:N"
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            return f"{device!r}: this machine has no CUDA device (torch {torch.__version__}); use cpu"
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            return f"{device!r}: this machine has {torch.cuda.device_count()} CUDA device(s), 0-based"
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        return f"{device!r}: MPS is not available on this machine; use cpu"
    elif dev.type not in ("cpu", "cuda", "mps"):
        return f"{device!r}: circuitspec runs on cpu, cuda or mps"
    return None


def check_device(hyp: Hypothesis, option: str | None = None) -> str:
    """The device a run on ``hyp`` uses (``option``, else the file's ``model.device``), refused
    before anything loads when this machine cannot run it: the error names ``--device`` or the
    file, line and field. A ``device_map`` or ``n_devices`` placement replaces the device."""
    spec = hyp.model_spec
    device = option or spec.device or "cpu"
    if spec.device_map is None and spec.n_devices is None and (problem := device_problem(device)):
        if option:
            raise CircuitSpecError(f"--device {problem}")
        raise HypothesisError(hyp.source, [hyp.problem(("model", "device"), problem)])
    return device


def tokens_for_memory(free_bytes: int, *, d_model: int, n_layers: int, floor: int) -> int:
    """Tokens (or recomputed rows) one pass may hold in ``free_bytes`` of device memory: a
    power of two, at least ``floor`` (the CPU's size) and at most 2**20."""
    per_token = FLOAT_BYTES * d_model * (CACHED_PER_LAYER * n_layers + TRANSIENT)
    fits = free_bytes // MEMORY_SHARE // per_token
    size = 1 << max(0, int(fits).bit_length() - 1) if fits >= 1 else 0
    return max(floor, min(size, MAX_PASS))


def pass_size(device: Any, cpu: int, *, d_model: int, n_layers: int) -> int:
    """The size of one pass on ``device``: ``cpu`` off CUDA, else sized from the free memory."""
    import torch

    dev = torch.device(device)
    if dev.type != "cuda":
        return cpu
    free, _total = torch.cuda.mem_get_info(dev)
    return tokens_for_memory(free, d_model=d_model, n_layers=n_layers, floor=cpu)
