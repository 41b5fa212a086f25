"""The device a run asks for (checked before anything loads) and the size of a pass on it."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from helpers.hypotheses import TRUE_CLAIMS, TRUE_EDGES, write_hypothesis

import circuitspec as cs
from circuitspec.bridge.device import MAX_PASS, device_problem, pass_size, tokens_for_memory
from circuitspec.bridge.loading import load_model
from circuitspec.cli import main
from circuitspec.errors import HypothesisError, ModelLoadError

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
GIB = 1 << 30


def _cli(args: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["circuitspec", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    captured = capsys.readouterr()
    return int(exited.value.code or 0), captured.out, captured.err


@NO_CUDA
def test_device_cuda_without_cuda_is_a_clear_error(tmp_path, tiny_model_dirs, monkeypatch, capsys):
    hyp = write_hypothesis(tmp_path / "h.yaml", tiny_model_dirs["llama"], edges=TRUE_EDGES, claims=TRUE_CLAIMS)
    out = tmp_path / "out"
    code, stdout, err = _cli(["verify", str(hyp), "--device", "cuda", "--out", str(out)], monkeypatch, capsys)
    assert code == 2, stdout + err
    assert "--device 'cuda'" in err and "no CUDA device" in err and "use cpu" in err, err
    assert "Traceback" not in stdout + err
    assert not out.exists()


@NO_CUDA
def test_device_in_the_file_is_located(tmp_path, tiny_model_dirs):
    hyp = write_hypothesis(tmp_path / "h.yaml", tiny_model_dirs["llama"], edges=TRUE_EDGES, claims=TRUE_CLAIMS)
    text = hyp.read_text().replace(f"model: {tiny_model_dirs['llama']}",
                                   f"model: {{name: {tiny_model_dirs['llama']}, device: cuda}}")
    hyp.write_text(text)
    with pytest.raises(HypothesisError, match=r"h\.yaml:2:\d+: model\.device: 'cuda': this machine has no CUDA"):
        cs.verify(hyp)
    # --device overrides the file's device
    assert cs.verify(hyp, device="cpu", n_random=2, n_random_edge=0, n_null_edges=0, n_bootstrap=100,
                     robustness=False).edges[0].verdict == "verified"


@NO_CUDA
def test_explore_names_the_file_device_it_cannot_use(tmp_path, tiny_model_dirs, monkeypatch, capsys):
    hyp = write_hypothesis(tmp_path / "h.yaml", tiny_model_dirs["llama"], edges=TRUE_EDGES, claims=TRUE_CLAIMS)
    hyp.write_text(hyp.read_text().replace(f"model: {tiny_model_dirs['llama']}",
                                           f"model: {{name: {tiny_model_dirs['llama']}, device: cuda}}"))
    out = tmp_path / "explored"
    code, stdout, err = _cli(["explore", "--hypothesis", str(hyp), "--out", str(out)], monkeypatch, capsys)
    assert code == 2, stdout + err
    assert "h.yaml:2:" in err and "model.device: 'cuda'" in err and "Traceback" not in err, err
    assert not out.exists()


@NO_CUDA
def test_load_model_refuses_a_device_it_cannot_use(tiny_model_dirs):
    with pytest.raises(ModelLoadError, match="'cuda:1': this machine has no CUDA"):
        load_model(str(tiny_model_dirs["llama"]), device="cuda:1")


def test_device_cpu_runs_from_the_command_line(tmp_path, tiny_model_dirs, monkeypatch, capsys):
    hyp = write_hypothesis(tmp_path / "h.yaml", tiny_model_dirs["llama"], edges=TRUE_EDGES, claims=TRUE_CLAIMS)
    out = tmp_path / "out"
    code, stdout, err = _cli(["verify", str(hyp), "--device", "cpu", "--n-random", "0", "--n-null-edges", "0",
                              "--n-random-edge", "0", "--n-bootstrap", "100", "--no-robustness", "--out", str(out)],
                             monkeypatch, capsys)
    assert code == 0, stdout + err
    assert json.loads((out / "results.json").read_text())["settings"]["device"] == "cpu"


def test_device_problem_names_what_is_wrong():
    assert device_problem("cpu") is None
    assert "not a torch device" in (device_problem("gpu0") or "")
    assert device_problem("cuda:99") is not None  # no machine here has 100 GPUs


def test_pass_size_off_cuda_is_the_cpu_size():
    assert pass_size("cpu", 4096, d_model=576, n_layers=30) == 4096
    assert pass_size(torch.device("cpu"), 8192, d_model=576, n_layers=30) == 8192


def test_tokens_for_memory_scales_with_free_memory_and_the_model():
    # SmolLM2-135M: 4 B x 576 x (8 x 30 + 32) = 626,688 B a token; a quarter of 78 GiB holds
    # 33,410 tokens, rounded down to a power of two.
    assert tokens_for_memory(78 * GIB, d_model=576, n_layers=30, floor=4096) == 32768
    # twice the memory, twice the tokens; a model twice as wide, half
    assert tokens_for_memory(156 * GIB, d_model=576, n_layers=30, floor=4096) == 65536
    assert tokens_for_memory(78 * GIB, d_model=1152, n_layers=30, floor=4096) == 16384
    # never below the CPU's size (a nearly full GPU), never above the cap (a tiny model)
    assert tokens_for_memory(GIB // 2, d_model=576, n_layers=30, floor=4096) == 4096
    assert tokens_for_memory(0, d_model=576, n_layers=30, floor=8192) == 8192
    assert tokens_for_memory(1 << 50, d_model=8, n_layers=2, floor=4096) == MAX_PASS


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_pass_size_on_cuda_reads_the_free_memory():
    free, _ = torch.cuda.mem_get_info()
    assert pass_size("cuda", 4096, d_model=576, n_layers=30) == tokens_for_memory(
        free, d_model=576, n_layers=30, floor=4096)


def test_engines_keep_the_cpu_sizes_on_the_cpu(tiny_models):
    """The CPU sizes were measured on the 2-core machine; only CUDA sizes come from memory."""
    from circuitspec.ablation.node import AblationRunner
    from circuitspec.data.ioi import build_ioi
    from circuitspec.patching.fast import FastEngine

    model = tiny_models["llama"]
    ds = build_ioi(model.tokenizer, n_prompts=4, seed=0, corruption="abc", prepend_bos=False)
    assert FastEngine(model, ds).max_rows == 8192
    assert AblationRunner(model, ds, "zero").max_tokens == 4096
    assert AblationRunner(model, ds, "zero", max_tokens=7).max_tokens == 7


def test_a_model_spread_over_devices_is_left_to_the_hooked_paths(tiny_model_dirs):
    """The row model computes on one device; a model split over several (device_map, n_devices)
    falls back to the exact engine and the hooked ablation passes instead of failing there."""
    from circuitspec.bridge.rows import unsupported_reason

    model = load_model(str(tiny_model_dirs["llama"]))
    assert unsupported_reason(model.bridge) is None
    model.bridge.blocks[1].to("meta")  # a second device without a GPU: only its placement matters here
    assert unsupported_reason(model.bridge) == "the model is spread over 2 devices"
