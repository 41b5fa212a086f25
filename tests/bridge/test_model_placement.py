"""Model loading over devices: ``device_map`` / ``n_devices`` (TransformerBridge's multi-device loading)."""

from __future__ import annotations

import pytest
import torch
from helpers.checkpoints import LATE_HYPOTHESIS, save_silenced

import circuitspec as cs
from circuitspec.bridge.loading import load_model
from circuitspec.errors import ModelLoadError

CUDA = torch.cuda.is_available()
CHEAP = {"n_random": 0, "n_null_edges": 0, "n_bootstrap": 100, "robustness": False, "scores": False,
         "per_head": False}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return save_silenced(tmp_path_factory.mktemp("placement") / "works", layers=(0, 1))


def _logits(model, tokens):
    with torch.no_grad():
        return model.bridge(tokens.to(model.bridge.cfg.device)).float().cpu()


def test_an_explicit_device_map_loads_the_same_weights(ckpt):
    plain = load_model(str(ckpt))
    mapped = load_model(str(ckpt), device_map={"": "cpu"})
    tokens = plain.tokenizer("When Mary and John went to the shops, John gave the bag to",
                             return_tensors="pt")["input_ids"]
    assert torch.equal(_logits(plain, tokens), _logits(mapped, tokens))


@pytest.mark.skipif(CUDA and torch.cuda.device_count() >= 2, reason="needs a machine with fewer than 2 GPUs")
def test_n_devices_beyond_the_machine_is_a_clear_error(ckpt, tmp_path):
    with pytest.raises(ModelLoadError, match="n_devices=2"):
        load_model(str(ckpt), n_devices=2)
    hyp = tmp_path / "h.yaml"
    hyp.write_text(LATE_HYPOTHESIS.format(model="{name: " + str(ckpt) + ", n_devices: 2}"))
    with pytest.raises(ModelLoadError, match="n_devices=2"):
        cs.verify(hyp, **CHEAP)


@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_device_map_auto_on_cuda_gives_the_cpu_numbers(ckpt, tmp_path):
    gpu = load_model(str(ckpt), device_map="auto")
    assert str(gpu.bridge.cfg.device).startswith("cuda")
    cpu_hyp, gpu_hyp = tmp_path / "cpu.yaml", tmp_path / "gpu.yaml"
    cpu_hyp.write_text(LATE_HYPOTHESIS.format(model=str(ckpt)))
    gpu_hyp.write_text(LATE_HYPOTHESIS.format(model="{name: " + str(ckpt) + ", device_map: auto}"))
    on_cpu, on_gpu = cs.verify(cpu_hyp, **CHEAP), cs.verify(gpu_hyp, **CHEAP)
    assert on_gpu.edges[0].effect == pytest.approx(on_cpu.edges[0].effect, abs=1e-4)
    assert on_gpu.metric.clean == pytest.approx(on_cpu.metric.clean, abs=1e-3)
    assert on_gpu.edges[0].verdict == on_cpu.edges[0].verdict == "verified"
