"""The fast engine against the exact engine: same numbers on every edge kind."""

from __future__ import annotations

import pytest
import torch

from circuitspec.data.dataset import Dataset
from circuitspec.errors import EngineUnsupported
from circuitspec.patching.engine import select_engine
from circuitspec.patching.exact import ExactEngine
from circuitspec.patching.fast import FastEngine
from circuitspec.patching.types import LOGITS, Receiver, Sender

# Two templates of different token lengths in one dataset, so the engines run
# several length groups and the named positions differ between prompts.
SHORT = [
    (" When John and Mary went to the shops, John gave the bag to",
     " When Amy and Bob went to the shops, Carl gave the bag to", " Mary", " John"),
    (" When Tom and James went to the park, James gave the ball to",
     " When Eve and Fred went to the park, Gina gave the ball to", " Tom", " James"),
    (" When Dan and Sid went to the store, Sid gave an apple to",
     " When Hugo and Ivy went to the store, Jack gave an apple to", " Dan", " Sid"),
]
LONG = [
    (" Then , Kate and Leo had a long argument , and afterwards Leo said to",
     " Then , Mia and Ned had a long argument , and afterwards Olga said to", " Kate", " Leo"),
    (" Then , Rose and Sam had a long argument , and afterwards Rose said to",
     " Then , Tina and Uma had a long argument , and afterwards Vic said to", " Sam", " Rose"),
]


def build_dataset(tokenizer, prompts) -> Dataset:
    """IOI-like prompts (clean, corrupted, IO, S) with END, S2, S1+1 and IO positions."""

    def ids(text):
        return tuple(tokenizer(text, add_special_tokens=False).input_ids)

    rows = []
    for clean, corrupt, io, s in prompts:
        c = ids(clean)
        s_tok, io_tok = ids(s)[0], ids(io)[0]
        pos = {"END": len(c) - 1, "S2": len(c) - 1 - c[::-1].index(s_tok),
               "S1+1": c.index(s_tok) + 1, "IO": c.index(io_tok)}
        rows.append((c, ids(corrupt), io_tok, s_tok, len(c), pos))
    return Dataset(
        clean=tuple(r[0] for r in rows),
        corrupt=tuple(r[1] for r in rows),
        correct=tuple(r[2] for r in rows),
        incorrect=tuple(r[3] for r in rows),
        positions={k: tuple(r[5][k] for r in rows) for k in ("END", "S2", "S1+1", "IO")},
        template=tuple(r[4] for r in rows),
        prepend_bos=False,
    )


def mixed_dataset(tokenizer) -> Dataset:
    return build_dataset(tokenizer, SHORT + LONG)


def _edge(senders, receivers, via, at, positions=None):
    sender = Sender(
        heads=tuple(s for s in senders if s[0] != "mlp"),
        mlps=tuple(s[1] for s in senders if s[0] == "mlp"),
        positions=positions,
    )
    receiver = LOGITS if receivers == "logits" else Receiver(tuple(receivers), via, at)
    return sender, receiver


CASES = [
    # senders, receivers, via, at, sender positions
    ([(0, 1)], "logits", None, None, None),
    ([(0, 1), (1, 2)], "logits", None, None, None),
    ([("mlp", 0)], "logits", None, None, None),
    ([(0, 1)], [(2, 0)], "q", "END", None),
    ([(0, 1)], [(2, 0)], "k", "S2", None),
    ([(0, 1)], [(2, 3)], "v", "S2", None),
    ([(0, 0), (0, 2)], [(2, 1), (2, 2)], "q", "END", None),
    ([(0, 3)], [(1, 1)], "k", "S1+1", None),
    ([(0, 3)], [(1, 1)], "v", "S1+1", None),
    ([(0, 3), (1, 0)], [(2, 1)], "v", "END", None),
    ([("mlp", 0), (0, 2)], [(1, 0), (2, 3)], "q", "S2", None),
    ([(0, 1)], [(1, 0), (2, 3)], "k", "S2", None),
    ([(0, 1), ("mlp", 1)], [(2, 2)], "k", None, None),
    ([(0, 1), (1, 3)], [(2, 0)], "q", "END", ("END", "S2")),
    ([(1, 2)], [(1, 0)], "q", "END", None),  # a sender that cannot reach its receiver
]

# Gemma 3's tiny model has a fourth layer: layers 0 and 2 are local (window 8,
# shorter than the prompts), 1 and 3 global, so receivers sit on both kinds.
GEMMA_CASES = [
    ([(1, 0), (1, 2)], [(3, 1), (3, 3)], "q", "END", None),
    ([(0, 2)], [(2, 1)], "k", "S1+1", None),  # S1+1 is outside END's window at layer 2
    ([(1, 3), (0, 1)], [(2, 0), (3, 2)], "v", "S2", None),
    ([(2, 1), (2, 3), ("mlp", 2)], "logits", None, None, None),
    ([(0, 0), (2, 2)], [(3, 0)], "k", "S2", ("S1+1", "S2")),
]


@pytest.fixture(scope="module")
def engines(tiny_models, tiny_gemma3):
    out = {}
    for family, model in {**tiny_models, "gemma3": tiny_gemma3}.items():
        ds = mixed_dataset(model.tokenizer)
        # max_batch=2 splits the three-prompt length group: chunking is exercised too.
        out[family] = (ExactEngine(model, ds), FastEngine(model, ds, max_batch=2))
    return out


@pytest.mark.parametrize("family", ["gpt2", "neox", "llama", "gemma3"])
def test_fast_matches_exact_on_every_edge_kind(engines, family):
    exact, fast = engines[family]
    every = CASES + (GEMMA_CASES if family == "gemma3" else [])
    assert fast.name == "fast", "the tiny families must run the fast path, not the fallback"
    for a, b in zip(exact.baselines(), fast.baselines(), strict=True):
        assert torch.allclose(a, b, atol=1e-5)
    clean, _ = exact.baselines()
    moved = 0
    # Every case under path semantics; the MLP-freezing and direct variants on a
    # cross-section (the exact engine's hooked passes dominate this test's time).
    for semantics, freeze, cases in (
        ("path", False, every),
        ("path", True, every[2:13:2] + every[15::2]),
        ("direct", False, every[1:13:2] + every[16::2]),
    ):
        for senders, receivers, via, at, positions in cases:
            sender, receiver = _edge(senders, receivers, via, at, positions)
            want = exact.patch(sender, receiver, semantics=semantics, freeze_mlps=freeze)
            got = fast.patch(sender, receiver, semantics=semantics, freeze_mlps=freeze)
            assert (got - want).abs().max() <= 1e-4, (semantics, freeze, senders, receivers, via, at)
            moved += int((want - clean).abs().max() > 1e-3)
    assert moved >= len(every) + 6, moved  # most edges must actually move the metric


@pytest.mark.parametrize("family", ["gpt2", "neox", "llama", "gemma3"])
def test_sweep_equals_one_patch_per_sender(engines, family):
    exact, fast = engines[family]
    senders = [Sender(heads=((layer, h),)) for layer in range(2) for h in range(4)]
    senders += [Sender(mlps=(0,)), Sender(heads=((0, 0), (1, 1)), positions=("S2",))]
    for receiver, semantics in (
        (LOGITS, "path"),
        (Receiver(((2, 1),), "v", "S2"), "path"),
        (Receiver(((2, 0), (2, 3)), "q", "END"), "direct"),
    ):
        got = fast.sweep(receiver, senders, semantics=semantics)
        assert got.shape == (len(senders), len(exact.dataset))
        for i in (5, len(senders) - 2, len(senders) - 1):
            want = exact.patch(senders[i], receiver, semantics=semantics)
            assert (got[i] - want).abs().max() <= 1e-4


def test_small_row_budget_chunks_senders(engines):
    _, fast = engines["llama"]
    senders = [Sender(heads=((0, h),)) for h in range(4)]
    receiver = Receiver(((2, 1),), "k", "S1+1")
    whole = fast.sweep(receiver, senders)
    fast.max_rows, saved = 1, fast.max_rows
    try:
        assert torch.allclose(fast.sweep(receiver, senders), whole, atol=1e-6)
    finally:
        fast.max_rows = saved


def test_unsupported_architecture_falls_back(tiny_models, engines, monkeypatch):
    import circuitspec.patching.fast as fast_module

    model = tiny_models["gpt2"]
    ds = mixed_dataset(model.tokenizer)
    monkeypatch.setattr(fast_module, "unsupported_reason", lambda bridge: "pretend")
    with pytest.raises(EngineUnsupported, match="pretend"):
        FastEngine(model, ds)
    with pytest.warns(UserWarning, match="falls back"):
        fast = select_engine(model, ds)
    assert fast.name == "reference"  # the engine that runs, which results.json records
    sender, receiver = _edge([(0, 1)], [(2, 0)], "q", "END")
    want = engines["gpt2"][0].patch(sender, receiver)  # same model and prompts
    assert torch.allclose(fast.patch(sender, receiver), want, atol=1e-6)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_self_check_catches_a_row_model_that_disagrees(tiny_models, monkeypatch, family):
    """The set-up self-check (a few prompts of every length) notices a wrong row model."""
    import circuitspec.patching.fast as fast_module

    class Skewed(fast_module.RowModel):  # type: ignore[misc, name-defined]
        def answer_diff(self, resid, correct, incorrect):
            return super().answer_diff(resid, correct, incorrect) + 1e-3

    model = tiny_models[family]
    monkeypatch.setattr(fast_module, "RowModel", Skewed)
    with pytest.warns(UserWarning, match="row-wise recomputation is off by 0.001"):
        engine = select_engine(model, mixed_dataset(model.tokenizer))
    assert engine.name == "reference"


@pytest.mark.real
def test_fast_matches_exact_on_smollm2(smollm2):
    from circuitspec.data.tasks import build_dataset as build_task
    from circuitspec.spec.schema import TaskSpec

    # Six prompts make three token lengths, so the flat multi-group passes are exercised.
    task = TaskSpec(kind="ioi", n_prompts=6, seed=0, corruption="abc")
    ds = build_task(task, smollm2.tokenizer, prepend_bos=smollm2.info.default_prepend_bos)
    assert len({len(c) for c in ds.clean}) >= 2
    exact, fast = ExactEngine(smollm2, ds), FastEngine(smollm2, ds)
    assert fast.name == "fast"
    edges = [  # GQA: k/v receivers read a key/value group shared by three heads
        (_edge([(9, 6)], "logits", None, None), ("path",)),
        (_edge([(7, 3), (8, 6)], [(9, 6), (10, 0)], "q", "END"), ("path", "direct")),
        (_edge([(3, 0)], [(7, 3)], "v", "S2"), ("path",)),
        (_edge([(4, 2)], [(5, 5)], "k", "S1+1"), ("path",)),
        (_edge([("mlp", 2), (2, 2)], [(6, 1)], "k", "S2"), ("path", "direct")),
    ]
    for (sender, receiver), semantics_list in edges:
        for semantics in semantics_list:
            want = exact.patch(sender, receiver, semantics=semantics)
            got = fast.patch(sender, receiver, semantics=semantics)
            assert (got - want).abs().max() <= 1e-4, (sender, receiver, semantics)




def test_softcapping_is_refused(tiny_gemma3, monkeypatch):
    from circuitspec.bridge.rows import unsupported_reason

    bridge = tiny_gemma3.bridge
    assert unsupported_reason(bridge) is None
    monkeypatch.setattr(bridge.original_model.config, "final_logit_softcapping", 30.0)
    assert "final_logit_softcapping" in unsupported_reason(bridge)


@pytest.mark.real
@pytest.mark.slow
def test_fast_matches_exact_on_gemma3_270m(gemma3_270m):
    from circuitspec.data.tasks import build_dataset as build_task
    from circuitspec.spec.schema import TaskSpec

    model = gemma3_270m
    task = TaskSpec(kind="ioi", n_prompts=4, seed=0, corruption="abc")
    ds = build_task(task, model.tokenizer, prepend_bos=model.info.default_prepend_bos)
    assert len({len(c) for c in ds.clean}) >= 2
    exact, fast = ExactEngine(model, ds), FastEngine(model, ds)
    assert fast.name == "fast"
    edges = [  # layers 5, 11 and 17 are global, the others local; 4 query heads share 1 k/v head
        (_edge([(9, 2)], "logits", None, None), "path"),
        (_edge([(7, 3), (7, 1)], [(10, 0), (11, 2)], "q", "END"), "path"),
        (_edge([(7, 3), (8, 1)], [(10, 0), (11, 2)], "q", "END"), "direct"),
        (_edge([(3, 0)], [(6, 3)], "v", "S2"), "path"),
        (_edge([("mlp", 2), (2, 2)], [(4, 1)], "k", "S1+1"), "path"),
    ]
    for (sender, receiver), semantics in edges:
        want = exact.patch(sender, receiver, semantics=semantics)
        got = fast.patch(sender, receiver, semantics=semantics)
        assert (got - want).abs().max() <= 1e-4, (sender, receiver, semantics)


@pytest.mark.parametrize("family", ["gpt2", "llama", "gemma3"])
def test_row_mlp_equals_the_bridge_module_across_chunks(tiny_models, tiny_gemma3, monkeypatch, family):
    """The row model's MLP (a gated MLP's projections without hook calls, in chunks of
    MLP_ROWS rows) writes what the bridge's own MLP module writes; the gated families take the
    direct path, which the spy on the module's forward shows."""
    import circuitspec.bridge.rows as rows_module

    model = tiny_gemma3 if family == "gemma3" else tiny_models[family]
    info = model.info
    rm = rows_module.RowModel(model.bridge, info.n_heads, info.n_kv_heads)
    monkeypatch.setattr(rows_module, "MLP_ROWS", 7)  # 3 x 11 rows: chunks of 7, the last one short
    block = model.bridge.blocks[0]
    x = torch.randn(3, 11, model.bridge.cfg.d_model, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = block.mlp(block.ln2(x))
        if rm.sandwich:
            want = block.ln2_post(want)
        calls = []
        handle = block.mlp.register_forward_hook(lambda *a: calls.append(1))
        got = rm.mlp(0, x)
        handle.remove()
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    assert (len(calls) == 0) == (family != "gpt2"), calls  # gated: direct; GPT-2: the module, per chunk
