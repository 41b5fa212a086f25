"""A micro model whose patching results follow from its construction, worked out by hand.

A 3-layer Llama (RMSNorm, so no mean-centering mixes the residual) in which only two
heads write to the residual stream: every other head's output projection and every
MLP's down projection is zero. Reasoning by hand:

- a head that writes nothing has effect exactly 0 into any receiver, by any semantics;
- a receiver whose query weights are zero computes q = 0 whatever it reads: a q edge
  into it has effect exactly 0 (planted zero on the receiving side);
- patching both writers into the logits gives, at END (same token in clean and
  corrupted prompts, nothing else writing), exactly the corrupted residual: effect -1;
- with MLPs writing nothing, path patching into the logits equals direct patching,
  and freezing MLPs changes nothing;
- (1,3) shares its key/value head with the writer (1,2) but writes nothing itself: an
  edge into (1,3)'s k or v must have effect exactly 0 (grouped-query isolation).
"""

from __future__ import annotations

import pytest
import torch
from helpers.engine_prompts import ioi_dataset
from helpers.factories import save_tiny_model

from circuitspec.bridge.loading import load_model
from circuitspec.patching.exact import ExactEngine
from circuitspec.patching.types import LOGITS, Receiver, Sender

WRITERS = ((0, 0), (1, 2))
BLIND = (2, 1)  # its W_Q is zero


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    from transformers import AutoModelForCausalLM

    path = save_tiny_model("llama", tmp_path_factory.mktemp("micro") / "llama", seed=3)
    model = AutoModelForCausalLM.from_pretrained(path)
    d_head = model.config.hidden_size // model.config.num_attention_heads
    with torch.no_grad():
        for i, layer in enumerate(model.model.layers):
            keep = torch.zeros_like(layer.self_attn.o_proj.weight)
            for wl, wh in WRITERS:
                if wl == i:
                    cols = slice(wh * d_head, (wh + 1) * d_head)
                    keep[:, cols] = layer.self_attn.o_proj.weight[:, cols]
            layer.self_attn.o_proj.weight.copy_(keep)
            layer.mlp.down_proj.weight.zero_()
        bl, bh = BLIND
        model.model.layers[bl].self_attn.q_proj.weight[bh * d_head:(bh + 1) * d_head] = 0
    model.save_pretrained(path)
    loaded = load_model(str(path))
    return loaded, ExactEngine(loaded, ioi_dataset(loaded.tokenizer))


def effect(engine, sender, receiver, **kw):
    clean, corrupt = engine.baselines()
    patched = engine.patch(sender, receiver, **kw)
    return float((patched.mean() - clean.mean()) / (clean.mean() - corrupt.mean()))


def test_silent_head_has_no_effect(micro):
    _, engine = micro
    clean, _ = engine.baselines()
    silent = Sender(heads=((0, 1), (1, 0)))
    for semantics in ("path", "direct"):
        for receiver in (LOGITS, Receiver(((2, 0),), "q", "END"), Receiver(((2, 3),), "k", "S2"),
                         Receiver(((1, 2),), "v", "S2")):
            got = engine.patch(silent, receiver, semantics=semantics)
            assert torch.allclose(got, clean, atol=1e-5)


def test_blind_receiver_has_no_effect(micro):
    _, engine = micro
    clean, _ = engine.baselines()
    for semantics in ("path", "direct"):
        got = engine.patch(Sender(heads=WRITERS), Receiver((BLIND,), "q", "END"), semantics=semantics)
        assert torch.allclose(got, clean, atol=1e-5)


def test_all_writers_into_logits_is_the_whole_gap(micro):
    _, engine = micro
    clean, corrupt = engine.baselines()
    assert abs(float(clean.mean() - corrupt.mean())) > 0.1
    assert effect(engine, Sender(heads=WRITERS), LOGITS) == pytest.approx(-1.0, abs=1e-5)


def test_without_mlps_path_equals_direct_and_freezing_is_a_no_op(micro):
    _, engine = micro
    for sender in (Sender(heads=((0, 0),)), Sender(heads=((1, 2),)), Sender(heads=WRITERS)):
        path = engine.patch(sender, LOGITS, semantics="path")
        direct = engine.patch(sender, LOGITS, semantics="direct")
        frozen = engine.patch(sender, LOGITS, freeze_mlps=True)
        assert torch.allclose(path, direct, atol=1e-5)
        assert torch.allclose(path, frozen, atol=1e-5)


def test_gqa_key_and_value_edges_reach_only_their_own_head(micro):
    """(1,2) writes; (1,3) shares its key/value head and writes nothing. A k or v edge into
    (1,3) alone must therefore have effect exactly 0: any leak into the shared key/value
    would reach (1,2) and move the metric. Into (1,2) the edge does move it."""
    model, engine = micro
    assert model.info.group_size == 2
    clean, _ = engine.baselines()
    sender = Sender(heads=((0, 0),))
    for via in ("k", "v"):
        writer = engine.patch(sender, Receiver(((1, 2),), via, "S2"))
        mate = engine.patch(sender, Receiver(((1, 3),), via, "S2"))
        both = engine.patch(sender, Receiver(((1, 2), (1, 3)), via, "S2"))
        assert not torch.allclose(writer, clean, atol=1e-4)
        assert torch.allclose(mate, clean, atol=1e-5)
        assert torch.allclose(both, writer, atol=1e-5)
