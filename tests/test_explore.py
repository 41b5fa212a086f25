"""Exploratory analyses on tiny models: shapes, exact identities, normalisation, files."""

from __future__ import annotations

import pytest
import torch

from circuitspec.analyses import attention, attribution, patching, sweeps
from circuitspec.spec import TaskSpec
from circuitspec.tasks import build_dataset


def _dataset(model, n=6, seed=0):
    return build_dataset(TaskSpec(kind="ioi"), model.tokenizer, prepend_bos=True, n_prompts=n, seed=seed)


@pytest.fixture(scope="module")
def gpt2(tiny_models):
    return tiny_models["gpt2"], _dataset(tiny_models["gpt2"])


@pytest.mark.parametrize("family", ["gpt2", "neox", "llama"])
def test_dla_components_sum_to_logit_diff(tiny_models, family):
    model = tiny_models[family]
    dla = attribution.direct_logit_attribution(model, _dataset(model))
    info = model.info
    assert len(dla.components) == 1 + info.n_layers * (info.n_heads + 2) + 1
    assert dla.per_head.values.shape == (info.n_layers, info.n_heads)
    assert dla.per_layer.values.shape == (2, info.n_layers)
    # Final-norm scale frozen at the clean run: embed + heads + biases + MLPs + b_U = logit diff.
    torch.testing.assert_close(dla.per_prompt.sum(0), dla.logit_diff, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("scale", ["frozen", "recomputed"])
def test_logit_lens_last_layer_is_the_model(gpt2, scale):
    model, ds = gpt2
    lens = attribution.logit_lens(model, ds, scale=scale)
    assert lens.values.shape == (1, model.info.n_layers + 1)
    dla = attribution.direct_logit_attribution(model, ds)
    assert lens.at("logit_diff", f"L{model.info.n_layers - 1}") == pytest.approx(
        float(dla.logit_diff.mean()), abs=1e-4)


def test_activation_patching_endpoints(tiny_models):
    model = tiny_models["llama"]
    ds = _dataset(model)
    nothing, everything = patching.patch_variants(
        model, ds, [(), (patching.Patch("blocks.0.hook_resid_pre"),)])
    assert float(nothing) == pytest.approx(0.0, abs=1e-5)
    assert float(everything) == pytest.approx(1.0, abs=1e-4)


def test_activation_patching_shapes(gpt2):
    model, ds = gpt2
    info = model.info
    resid = patching.activation_patching(model, ds, "resid_pre")
    assert resid.values.shape == (info.n_layers, len(ds.positions) + 1)
    assert resid.at("0", "ALL") == pytest.approx(1.0, abs=1e-4)
    heads = patching.activation_patching(model, ds, "head_out")
    assert heads.values.shape == (info.n_layers, info.n_heads)
    by_pos = patching.activation_patching(model, ds, "head_out_by_pos")
    assert by_pos.values.shape == (info.n_layers * info.n_heads, len(ds.positions))


def test_kv_patching_is_per_kv_head_on_gqa(tiny_models):
    model = tiny_models["llama"]
    grid = patching.activation_patching(model, _dataset(model, n=3), "v")
    assert grid.values.shape == (model.info.n_layers, model.info.n_kv_heads)


def test_attention_summaries_are_probabilities(gpt2):
    model, ds = gpt2
    grid = attention.attention_summaries(model, ds)
    assert grid.values.shape == (model.info.n_layers * model.info.n_heads, 6)
    assert float(grid.values.min()) >= 0 and float(grid.values.max()) <= 1
    maps = attention.attention_maps(model, ds, [(0, 1), (2, 3)])
    n = len(ds.clean[0])
    assert maps.patterns.shape == (2, n, n)
    torch.testing.assert_close(maps.patterns.sum(-1), torch.ones(2, n))


def test_backup_name_movers_changes_only_what_it_should(gpt2):
    model, ds = gpt2
    grid = attribution.backup_name_movers(model, ds, [(2, 0)])
    assert grid.values.shape == (model.info.n_layers * model.info.n_heads, 2)
    # Heads before the ablated one see the same inputs: their DLA only moves with the norm scale.
    assert grid.extra["logit_diff_before"] != grid.extra["logit_diff_after"]


def test_sweep_shapes_and_confirmation(gpt2):
    model, ds = gpt2
    grid = sweeps.path_patch_sweep(model, ds, [(2, 1)], "q", "END", method="attribution",
                                   confirm=2, progress=False)
    assert torch.isnan(grid.values[2]).all() and not torch.isnan(grid.values[:2]).any()
    assert len(grid.extra["exact"]) == 2


def test_explore_writes_files(gpt2, tmp_path):
    from circuitspec.explore import explore

    model, ds = gpt2
    summary = explore(model, ds, tmp_path, only=["logit_lens", "dla", "attention", "backup"],
                      progress=False)
    for files in summary["files"].values():
        for f in files:
            assert (tmp_path / f).exists() or __import__("pathlib").Path(f).exists()
    assert (tmp_path / "dla_heads.png").stat().st_size > 1000


@pytest.mark.real
def test_smollm2_dla_and_attention(smollm2):
    ds = build_dataset(TaskSpec(kind="ioi"), smollm2.tokenizer, prepend_bos=False, n_prompts=4, seed=0)
    dla = attribution.direct_logit_attribution(smollm2, ds)
    torch.testing.assert_close(dla.per_prompt.sum(0), dla.logit_diff, atol=1e-3, rtol=1e-3)
    assert float(dla.logit_diff.mean()) > 1  # SmolLM2 does IOI
    grid = attention.attention_summaries(smollm2, ds)
    assert grid.values.shape == (270, 6)
