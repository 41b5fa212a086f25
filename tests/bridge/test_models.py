"""Model loading: local checkpoints, aliases, hub ids, errors; the real packaged models."""

from __future__ import annotations

import os
import subprocess

import pytest
import torch
from helpers.cli import CLI

from circuitspec.bridge.loading import PACKAGED, load_model, resolve_kind
from circuitspec.errors import ModelLoadError

PROMPT = "When John and Mary went to the shops, John gave the bag to"


def top_token(model, prompt: str, prepend_bos: bool) -> tuple[str, float]:
    tok = model.tokenizer
    ids = tok(prompt, add_special_tokens=False).input_ids
    if prepend_bos:
        ids = [tok.bos_token_id] + ids
    with torch.no_grad():
        probs = model.bridge(torch.tensor([ids]))[0, -1].softmax(-1)
    best = int(probs.argmax())
    return tok.decode([best]), float(probs[best])


def test_local_checkpoints_of_each_family_load(tiny_models):
    shapes = {name: (m.info.n_layers, m.info.n_heads, m.info.n_kv_heads) for name, m in tiny_models.items()}
    assert shapes == {"gpt2": (3, 4, 4), "neox": (3, 4, 4), "llama": (3, 4, 2)}
    for model in tiny_models.values():
        assert model.bridge.compatibility_mode
        logits = model.bridge(torch.tensor([[1, 2, 3]]))
        assert logits.shape[-1] == len(model.tokenizer)


def test_reference_kinds():
    assert resolve_kind("smollm2-135m-instruct") == "alias"
    assert resolve_kind("EleutherAI/pythia-1.4b") == "hub"
    with pytest.raises(ModelLoadError, match="did you mean 'smollm2-135m-instruct'"):
        resolve_kind("smollm2-135m")
    with pytest.raises(ModelLoadError, match="does not exist"):
        resolve_kind("./no/such/folder")


def test_unreachable_hub_is_a_clear_error(monkeypatch):
    import huggingface_hub.constants

    # The hub library reads the variable at import time; set both so no network is tried.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelLoadError, match="No model hub is reachable"):
        load_model("circuitspec-tests/no-such-model")


@pytest.mark.parametrize("ref", ["smollm2-135", "./missing-dir", "nobody/nothing"])
def test_bad_model_references_exit_2_without_traceback(ref):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    run = subprocess.run(CLI + ["fetch", ref], capture_output=True, text=True, env=env)
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert ref in run.stderr


def test_models_command_lists_aliases():
    run = subprocess.run(CLI + ["models"], capture_output=True, text=True,
                         env=dict(os.environ, COLUMNS="200"))
    assert run.returncode == 0
    for alias in PACKAGED:
        assert alias in run.stdout


@pytest.mark.real
def test_smollm2_does_ioi(smollm2):
    token, prob = top_token(smollm2, PROMPT, prepend_bos=False)
    assert token == " Mary"
    assert prob > 0.5
    assert (smollm2.info.n_layers, smollm2.info.n_heads, smollm2.info.n_kv_heads) == (30, 9, 3)


@pytest.mark.real
@pytest.mark.slow
def test_gemma_loads_does_ioi_and_caches(tmp_path, monkeypatch):
    from circuitspec.bridge import loading as models
    gguf = models.fetch("gemma-3-270m")  # downloads once per machine, then reused
    # A first load in a fresh cache dequantises and converts; a second reads the
    # converted float32 folder and never touches (or re-hashes) the GGUF.
    monkeypatch.setenv("CIRCUITSPEC_CACHE", str(tmp_path))
    (tmp_path / "gemma-3-270m").mkdir()
    os.symlink(gguf, models.gguf_path("gemma-3-270m"))
    assert models.cached_status("gemma-3-270m") == "downloaded"
    first = load_model("gemma-3-270m")
    token, prob = top_token(first, PROMPT, prepend_bos=True)
    assert token == " Mary" and prob > 0.5
    assert (first.info.n_layers, first.info.n_heads, first.info.n_kv_heads) == (18, 4, 1)
    assert models.cached_status("gemma-3-270m") == "converted (fast load)"
    del first

    def no_gguf(alias):
        raise AssertionError("a converted model must load without its GGUF")

    monkeypatch.setattr(models, "fetch", no_gguf)
    second = load_model("gemma-3-270m")
    assert top_token(second, PROMPT, prepend_bos=True)[0] == " Mary"
