"""The exploratory analyses make their tensors on the model's device (``explore --hypothesis``
with ``model.device: cuda``).

Checked on the CPU as tests/verification/test_gpu.py checks verify: torch's default device is
set to ``meta`` once the model is loaded, so a tensor made without naming a device lands on
``meta`` and the analysis raises or changes a number. On a CUDA machine the same analyses also
run on the GPU and are compared with the CPU's.
"""

from __future__ import annotations

import pytest
import torch
from helpers.factories import save_tiny_model

from circuitspec.analyses import activation_patching as patching
from circuitspec.analyses import sweeps
from circuitspec.analyses.explore import ANALYSES, explore
from circuitspec.bridge.loading import load_model
from circuitspec.data.tasks import build_dataset
from circuitspec.spec.schema import TaskSpec


def _dataset(model):
    return build_dataset(TaskSpec(kind="ioi"), model.tokenizer, prepend_bos=True, n_prompts=4, seed=0)


def _numbers(model, dataset, out, method: str) -> dict[str, str]:
    explore(model, dataset, out, progress=False, sweep_method=method, patch_prompts=2)
    return {p.name: p.read_text() for p in sorted(out.glob("*.json")) if p.name != "explore.json"}


def _variants():
    return [(), (patching.Patch("blocks.1.hook_resid_pre", None, "S2"),),
            (patching.Patch("blocks.2.attn.hook_z", 1, "END"),), (patching.Patch("blocks.0.attn.hook_q", 0),), (patching.Patch("blocks.1.attn.hook_v", 0, "S2"),),
            (patching.Patch("blocks.1.attn.hook_pattern", 2),), (patching.Patch("blocks.2.hook_mlp_out", None),)]


def test_every_analysis_follows_the_model_device(tmp_path):
    """Gemma 3 (grouped keys, sandwich norms, local layers): every analysis of ``explore`` with
    attribution sweeps, an exact sweep, and activation patching resumed and in full passes."""
    model = load_model(str(save_tiny_model("gemma3", tmp_path / "gemma3")))
    dataset = _dataset(model)
    expected = _numbers(model, dataset, tmp_path / "cpu", "attribution")
    with torch.device("meta"):
        got = _numbers(model, dataset, tmp_path / "meta", "attribution")
    assert len(expected) >= len(ANALYSES)
    assert got == expected
    exact = sweeps.path_patch_sweep(model, dataset, [(2, 0)], "v", "S2", method="exact", progress=False)
    with torch.device("meta"):
        again = sweeps.path_patch_sweep(model, dataset, [(2, 0)], "v", "S2", method="exact", progress=False)
    assert not torch.isnan(exact.values).all()
    torch.testing.assert_close(again.values, exact.values, rtol=0, atol=0, equal_nan=True)  # the same numbers
    for resume in (True, False):  # the resumed rows and the full stacked passes
        want = patching.patch_variants(model, dataset, _variants(), resume=resume)
        with torch.device("meta"):
            assert torch.equal(patching.patch_variants(model, dataset, _variants(), resume=resume), want)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_every_analysis_on_cuda_gives_the_cpu_numbers(tmp_path):
    import json

    folder = save_tiny_model("llama", tmp_path / "llama")
    on_cpu, on_gpu = load_model(str(folder)), load_model(str(folder), device="cuda")
    dataset = _dataset(on_cpu)
    for method in ("exact", "attribution"):
        cpu = _numbers(on_cpu, dataset, tmp_path / f"cpu-{method}", method)
        gpu = _numbers(on_gpu, dataset, tmp_path / f"gpu-{method}", method)
        assert cpu.keys() == gpu.keys()
        for name in cpu:
            a, b = json.loads(cpu[name])["values"], json.loads(gpu[name])["values"]
            flat_a = [v for row in a for v in row if isinstance(v, float)]
            flat_b = [v for row in b for v in row if isinstance(v, float)]
            assert flat_b == pytest.approx(flat_a, abs=1e-4), name
    for resume in (True, False):
        want = patching.patch_variants(on_cpu, dataset, _variants(), resume=resume)
        got = patching.patch_variants(on_gpu, dataset, _variants(), resume=resume)
        torch.testing.assert_close(got.cpu(), want, atol=1e-4, rtol=1e-4)
