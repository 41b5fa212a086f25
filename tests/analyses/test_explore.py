"""Exploratory analyses on tiny models: shapes, exact identities, normalisation, files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from circuitspec.analyses import activation_patching as patching
from circuitspec.analyses import attention, attribution, sweeps
from circuitspec.analyses.explore import ANALYSES
from circuitspec.data.tasks import build_dataset
from circuitspec.spec.schema import TaskSpec


def _dataset(model, n=6, seed=0):
    return build_dataset(TaskSpec(kind="ioi"), model.tokenizer, prepend_bos=True, n_prompts=n, seed=seed)


@pytest.fixture(scope="module")
def gpt2(tiny_models):
    return tiny_models["gpt2"], _dataset(tiny_models["gpt2"])


@pytest.fixture(scope="module")
def gemma3(tmp_path_factory):
    from helpers.factories import save_tiny_model

    from circuitspec.bridge.loading import load_model

    return load_model(str(save_tiny_model("gemma3", tmp_path_factory.mktemp("gemma3"))))


@pytest.fixture(scope="module")
def models(tiny_models, gemma3):
    """The shared tiny models plus Gemma 3 (sandwich norms, q/k norms, local layers)."""
    return {**tiny_models, "gemma3": gemma3}


@pytest.mark.parametrize("family", ["gpt2", "neox", "llama", "gemma3"])
def test_dla_components_sum_to_logit_diff(models, family):
    model = models[family]
    dla = attribution.direct_logit_attribution(model, _dataset(model))
    info = model.info
    assert len(dla.components) == 1 + info.n_layers * (info.n_heads + 2) + 1
    assert dla.per_head.values.shape == (info.n_layers, info.n_heads)
    assert dla.per_layer.values.shape == (2, info.n_layers)
    # Final-norm scale frozen at the clean run: embed + heads + biases + MLPs + b_U = logit diff.
    torch.testing.assert_close(dla.per_prompt.sum(0), dla.logit_diff, atol=1e-4, rtol=1e-4)
    # Heads add up to their layer's attention write (on Gemma 3 through the post-attention
    # norm at the layer's own scale); the output bias is the rest, zero without a b_O.
    bias = dla.per_prompt[[dla.components.index(f"attn_bias{i}") for i in range(info.n_layers)]].mean(1)
    torch.testing.assert_close(dla.per_head.values.sum(1) + bias, dla.per_layer.values[0], atol=1e-5,
                               rtol=1e-5)
    if family in ("llama", "gemma3"):
        assert float(bias.abs().max()) < 1e-5


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


# The hook each kind of activation patching writes to, in TransformerLens's names (written out
# here rather than read from the module under test).
HOOKS = {
    "resid_pre": "blocks.{}.hook_resid_pre", "attn_out": "blocks.{}.hook_attn_out",
    "mlp_out": "blocks.{}.hook_mlp_out", "head_out": "blocks.{}.attn.hook_z",
    "head_out_by_pos": "blocks.{}.attn.hook_z", "q": "blocks.{}.attn.hook_q",
    "k": "blocks.{}.attn.hook_k", "v": "blocks.{}.attn.hook_v", "pattern": "blocks.{}.attn.hook_pattern",
}


def _all_variants(model, ds, kind):
    info, hook = model.info, HOOKS[kind]
    slots = info.n_kv_heads if kind in ("k", "v") else info.n_heads
    cols = patching.named_positions(ds)
    out = []
    for layer in range(info.n_layers):
        if kind in ("resid_pre", "attn_out", "mlp_out"):
            out += [(patching.Patch(hook.format(layer), None, c),) for c in [*cols, None]]
        elif kind == "head_out_by_pos":
            out += [(patching.Patch(hook.format(layer), h, c),) for h in range(slots) for c in cols]
        else:
            out += [(patching.Patch(hook.format(layer), h),) for h in range(slots)]
    return out


@pytest.mark.parametrize("family", ["gpt2", "neox", "llama", "gemma3"])
def test_resumed_patching_matches_full_passes(models, family):
    """Recomputing only from the patched layer and position gives the full passes' numbers."""
    model = models[family]
    ds = _dataset(model, n=4)
    variants = [(), (patching.Patch("blocks.1.hook_resid_pre", None, "S2"),
                     patching.Patch("blocks.2.attn.hook_z", 1, "END"))]
    assert set(HOOKS) == set(patching.KINDS)
    for kind in patching.KINDS:
        variants += _all_variants(model, ds, kind)
    resumed = patching.patch_variants(model, ds, variants, resume=True)
    full = patching.patch_variants(model, ds, variants, resume=False)
    assert float(full.std()) > 0.05  # the patches do something
    torch.testing.assert_close(resumed, full, atol=1e-4, rtol=1e-4)


def test_head_comparison_grids(tiny_models):
    model = tiny_models["llama"]
    ds = _dataset(model, n=3)
    out, v = (patching.activation_patching(model, ds, k) for k in ("head_out", "v"))
    grid = patching.compare_heads(model, v, out)
    info = model.info
    assert grid.values.shape == (info.n_layers * info.n_heads, 2)
    group = info.n_heads // info.n_kv_heads
    assert grid.at("L1H1", "v") == pytest.approx(float(v.values[1, 1 // group]))
    assert grid.at("L2H3", "head output") == pytest.approx(float(out.values[2, 3]))


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
    assert maps.as_grid().values.shape == (2 * n, n)


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
    from circuitspec.analyses.explore import explore

    model, ds = gpt2
    summary = explore(model, ds, tmp_path, progress=False)
    assert set(summary["seconds"]) == set(ANALYSES)
    for name, files in summary["files"].items():
        for f in files:
            assert Path(f).exists() and Path(f).stat().st_size > 50, f
        assert {Path(f).suffix for f in files} == {".json", ".csv", ".png"}, name
    expected = {"logit_lens", "dla_layers", "dla_heads", "attention", "attention_maps",
                "patch_resid_pre", "patch_attn_out", "patch_mlp_out", "patch_head_out",
                "patch_head_out_by_pos", "patch_q", "patch_k", "patch_v", "patch_pattern",
                "patch_head_out_vs_pattern", "patch_head_out_vs_v", "path_logits@END",
                "backup_name_movers"}
    assert expected <= set(summary["files"])


@pytest.mark.real
def test_smollm2_dla_and_attention(smollm2):
    ds = build_dataset(TaskSpec(kind="ioi"), smollm2.tokenizer, prepend_bos=False, n_prompts=4, seed=0)
    dla = attribution.direct_logit_attribution(smollm2, ds)
    torch.testing.assert_close(dla.per_prompt.sum(0), dla.logit_diff, atol=1e-3, rtol=1e-3)
    assert float(dla.logit_diff.mean()) > 1  # SmolLM2 does IOI
    grid = attention.attention_summaries(smollm2, ds)
    assert grid.values.shape == (270, 6)


@pytest.mark.real
def test_smollm2_resumed_patching_matches_full_passes(smollm2):
    ds = build_dataset(TaskSpec(kind="ioi"), smollm2.tokenizer, prepend_bos=False, n_prompts=3, seed=0)
    variants = [(patching.Patch("blocks.0.hook_resid_pre"),),
                (patching.Patch("blocks.12.hook_resid_pre", None, "S2"),),
                (patching.Patch("blocks.17.attn.hook_z", 4, "S2"),),
                (patching.Patch("blocks.20.attn.hook_v", 0),),
                (patching.Patch("blocks.23.attn.hook_pattern", 3),),
                (patching.Patch("blocks.26.hook_mlp_out", None, "END"),)]
    resumed = patching.patch_variants(smollm2, ds, variants, resume=True)
    full = patching.patch_variants(smollm2, ds, variants, resume=False)
    assert float(resumed[0]) == pytest.approx(1.0, abs=1e-3)  # the whole residual at layer 0: clean run
    torch.testing.assert_close(resumed, full, atol=2e-3, rtol=2e-3)


def test_cli_help_names_every_analysis():
    import typer

    from circuitspec.cli import app

    # The help text the user sees for `explore --only`, read from the registered command (not the
    # source file, which moves when the commands are reorganised).
    explore_cmd = typer.main.get_command(app).commands["explore"]
    only = next(p for p in explore_cmd.params if "--only" in p.opts)
    assert all(name in only.help for name in ANALYSES)


def test_patch_prompts_limits_activation_patching_only(gpt2, tmp_path):
    import json

    from circuitspec.analyses.explore import explore

    model, ds = gpt2
    summary = explore(model, ds, tmp_path, only=["patch_heads"], progress=False, patch_prompts=2)
    assert summary["patch_prompts"] == 2 and summary["n_prompts"] == len(ds)
    saved = json.loads((tmp_path / "patch_head_out.json").read_text())["values"]
    expected = patching.activation_patching(model, ds.subset([0, 1]), "head_out").values
    torch.testing.assert_close(torch.tensor(saved), expected, atol=1e-5, rtol=1e-5)
