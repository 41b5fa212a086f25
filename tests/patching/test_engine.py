"""The exact engine against an independent reference, planted zeros and identities."""

from __future__ import annotations

import pytest
import torch
from helpers.engine_prompts import ioi_dataset
from helpers.reference_patching import reference_patch

from circuitspec.data.dataset import Dataset
from circuitspec.patching.exact import ExactEngine
from circuitspec.patching.types import LOGITS, Receiver, Sender

CASES = [
    # senders, receivers, via, at
    ([(0, 1)], "logits", None, None),
    ([(0, 1), (1, 2)], "logits", None, None),
    ([("mlp", 0)], "logits", None, None),
    ([(0, 1)], [(2, 0)], "q", "END"),
    ([(0, 1)], [(2, 0)], "k", "S2"),
    ([(0, 1)], [(2, 3)], "v", "S2"),
    ([(0, 0), (0, 2)], [(2, 1), (2, 2)], "q", "END"),
    ([(0, 3)], [(1, 1)], "k", "S1+1"),
    ([(0, 3), (1, 0)], [(2, 1)], "v", "END"),
    ([("mlp", 0), (0, 2)], [(1, 0), (2, 3)], "q", "S2"),
    ([(0, 1)], [(1, 0), (2, 3)], "k", "S2"),
]


def _run_engine(engine, senders, receivers, via, at, semantics, freeze_mlps=False):
    sender = Sender(
        heads=tuple(s for s in senders if s[0] != "mlp"),
        mlps=tuple(s[1] for s in senders if s[0] == "mlp"),
    )
    receiver = LOGITS if receivers == "logits" else Receiver(tuple(receivers), via, at)
    return engine.patch(sender, receiver, semantics=semantics, freeze_mlps=freeze_mlps)


@pytest.mark.parametrize("family", ["gpt2", "neox", "llama"])
@pytest.mark.parametrize("semantics", ["path", "direct"])
def test_engine_matches_reference(tiny_models, family, semantics):
    model = tiny_models[family]
    ds = ioi_dataset(model.tokenizer)
    engine = ExactEngine(model, ds)
    clean, corrupt = engine.baselines()
    assert (clean - corrupt).abs().max() > 1e-3, "corruption must move the metric"
    moved = 0
    for senders, receivers, via, at in CASES:
        got = _run_engine(engine, senders, receivers, via, at, semantics)
        want = reference_patch(model, ds, senders, receivers, via, at, semantics)
        assert torch.allclose(got, want, atol=1e-4), (senders, receivers, via, at, got, want)
        moved += int((got - clean).abs().max() > 1e-4)
    # A comparison of two no-ops proves nothing: most cases must move the metric.
    assert moved >= len(CASES) - 3, moved


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_freeze_mlps_matches_reference(tiny_models, family):
    model = tiny_models[family]
    ds = ioi_dataset(model.tokenizer)
    engine = ExactEngine(model, ds)
    for senders, receivers, via, at in CASES[:5]:
        got = _run_engine(engine, senders, receivers, via, at, "path", freeze_mlps=True)
        want = reference_patch(model, ds, senders, receivers, via, at, "path", freeze_mlps=True)
        assert torch.allclose(got, want, atol=1e-4)


def test_all_senders_path_into_logits_is_the_corrupted_run(tiny_models):
    model = tiny_models["neox"]
    ds = ioi_dataset(model.tokenizer)
    engine = ExactEngine(model, ds)
    every = Sender(
        heads=tuple((layer, h) for layer in range(3) for h in range(4)), mlps=(0, 1, 2)
    )
    _, corrupt = engine.baselines()
    assert torch.allclose(engine.patch(every, LOGITS), corrupt, atol=1e-4)


def test_patching_with_own_clean_value_has_no_effect(tiny_models):
    model = tiny_models["llama"]
    ds = ioi_dataset(model.tokenizer)
    same = Dataset(ds.clean, ds.clean, ds.correct, ds.incorrect, ds.positions, ds.template, False)
    engine = ExactEngine(model, same)
    clean, _ = engine.baselines()
    for semantics in ("path", "direct"):
        for receiver in (LOGITS, Receiver(((2, 1),), "k", "S2"), Receiver(((2, 0),), "q", "END")):
            got = engine.patch(Sender(heads=((0, 1), (1, 3))), receiver, semantics=semantics)
            assert torch.allclose(got, clean, atol=1e-5)


def test_direct_all_heads_into_logits_adds_every_corrupted_write(tiny_models):
    """Sender = every head, direct into logits: clean final residual + all heads' changes."""
    model = tiny_models["gpt2"]
    ds = ioi_dataset(model.tokenizer)
    engine = ExactEngine(model, ds)
    bridge = model.bridge
    clean_t = torch.tensor(ds.clean)
    _, cc = bridge.run_with_cache(clean_t)
    _, cr = bridge.run_with_cache(torch.tensor(ds.corrupt))
    total = sum(cr[f"blocks.{i}.hook_attn_out"] - cc[f"blocks.{i}.hook_attn_out"] for i in range(3))
    logits = bridge.run_with_hooks(clean_t, fwd_hooks=[("ln_final.hook_in", lambda x, hook: x + total)])
    rows = torch.arange(3)
    end = logits[rows, torch.tensor(ds.positions["END"])]
    want = end[rows, torch.tensor(ds.correct)] - end[rows, torch.tensor(ds.incorrect)]
    every = Sender(heads=tuple((layer, h) for layer in range(3) for h in range(4)))
    assert torch.allclose(engine.patch(every, LOGITS, semantics="direct"), want, atol=1e-4)


@pytest.mark.real
def test_engine_matches_reference_on_smollm2(smollm2):
    from circuitspec.data.tasks import build_dataset
    from circuitspec.spec.schema import TaskSpec

    ds = build_dataset(TaskSpec(kind="ioi", n_prompts=12, seed=1), smollm2.tokenizer, prepend_bos=False)
    ds = ds.subset(ds.length_groups()[0][:4])  # the reference wants one token length
    engine = ExactEngine(smollm2, ds)
    # Each reference call costs two cached runs and several passes of the real model on
    # two CPU cores: one case per input kind, the semantics alternating.
    cases = [
        ("path", [(20, 0), (19, 2)], [(23, 3)], "q", "END"),
        ("direct", [(10, 4), ("mlp", 12)], [(18, 2), (19, 5)], "v", "S2"),
        ("path", [(16, 0)], [(17, 4)], "k", "S1+1"),
        ("direct", [(5, 1)], [(12, 4)], "k", "S2"),
    ]
    for semantics, senders, receivers, via, at in cases:
        got = _run_engine(engine, senders, receivers, via, at, semantics)
        want = reference_patch(smollm2, ds, senders, receivers, via, at, semantics)
        assert torch.allclose(got, want, atol=1e-4), (semantics, senders, receivers, got, want)
