"""The suggested draft is a valid hypothesis file with evidence comments."""

from __future__ import annotations

from circuitspec.spec import TaskSpec, load_hypothesis
from circuitspec.suggest import suggest
from circuitspec.tasks import build_dataset


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
