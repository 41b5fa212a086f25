"""The suggested draft is a valid hypothesis file with evidence comments."""

from __future__ import annotations

from helpers.paths import ROOT

from circuitspec.analyses.suggest import suggest
from circuitspec.data.tasks import build_dataset
from circuitspec.spec.load import load_hypothesis
from circuitspec.spec.schema import TaskSpec


def test_draft_validates(tiny_models, tiny_model_dirs, tmp_path):
    model = tiny_models["gpt2"]
    ds = build_dataset(TaskSpec(kind="ioi"), model.tokenizer, prepend_bos=True, n_prompts=6, seed=0)
    path, draft = suggest(model, ds, tmp_path / "draft.yaml", model_ref=str(tiny_model_dirs["gpt2"]),
                          seed=0, progress=False, confirm=3)
    hyp = load_hypothesis(path)
    assert "name_movers" in hyp.nodes
    assert any(e.receiver == "logits" for e in hyp.edges)
    text = path.read_text()
    assert "# L" in text and "DLA" in text  # evidence comments
    assert set(hyp.nodes) == set(draft.groups)
    # The draft records the prompts it was found on and verifies on another seed.
    assert hyp.discovery is not None and (hyp.discovery.seed, hyp.discovery.n_prompts) == (0, 6)
    assert hyp.discovery.corruption == "abc" and hyp.discovery.templates is None
    assert hyp.task.seed != hyp.discovery.seed


def test_committed_smollm2_draft_is_a_valid_hypothesis():
    """docs/examples/suggest_smollm2_135m.yaml is `suggest`'s output on SmolLM2, kept loadable."""

    path = ROOT / "docs" / "examples" / "suggest_smollm2_135m.yaml"
    hyp = load_hypothesis(path)
    assert {"name_movers", "s_inhibition", "induction", "previous"} <= set(hyp.nodes)
    assert "verified" in path.read_text()  # the recorded verify run
