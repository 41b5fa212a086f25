"""Tasks: turn a hypothesis's ``task`` section into a tokenized :class:`Dataset`.

``kind: ioi`` runs the IOI generator (:mod:`circuitspec.data.ioi`). ``kind: prompts`` takes
your own clean/corrupted pairs, inline, from a JSONL file, or a packaged set
(``builtin: notebook``, the eight prompts of the Pythia IOI notebook). IOI positions
(IO, S1, S1+1, S2) are found automatically when every prompt has the
two-names-one-repeated shape; give ``positions`` explicitly otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from circuitspec.data.dataset import Dataset
from circuitspec.data.ioi import IOI_POSITIONS, build_ioi, ioi_positions
from circuitspec.errors import HypothesisError, InputFileError, PromptError, TaskError
from circuitspec.spec.schema import PromptRecord, TaskSpec
from circuitspec.spec.textfile import read_text

__all__ = ["NOTEBOOK_PROMPTS", "PromptError", "build_dataset", "prompt_records", "task_positions"]

DEFAULT_IOI_PROMPTS = 128

# The seed notebook's prompts and (correct, incorrect) answers; each prompt's
# corruption is its neighbour in the pair (the s_swap of the notebook).
NOTEBOOK_PROMPTS = (
    ("When John and Mary went to the shops, John gave the bag to", " Mary", " John"),
    ("When John and Mary went to the shops, Mary gave the bag to", " John", " Mary"),
    ("When Tom and James went to the park, James gave the ball to", " Tom", " James"),
    ("When Tom and James went to the park, Tom gave the ball to", " James", " Tom"),
    ("When Dan and Sid went to the shops, Sid gave an apple to", " Dan", " Sid"),
    ("When Dan and Sid went to the shops, Dan gave an apple to", " Sid", " Dan"),
    ("After Martin and Amy went to the park, Amy gave a drink to", " Martin", " Amy"),
    ("After Martin and Amy went to the park, Martin gave a drink to", " Amy", " Martin"),
)


def _notebook_records() -> list[PromptRecord]:
    return [
        PromptRecord(clean=clean, corrupted=NOTEBOOK_PROMPTS[i ^ 1][0], correct=c, incorrect=w)
        for i, (clean, c, w) in enumerate(NOTEBOOK_PROMPTS)
    ]


def prompt_records(task: TaskSpec, base_dir: str | Path | None = None) -> list[PromptRecord]:
    """The prompt pairs of a ``kind: prompts`` task (inline, JSONL file or builtin)."""
    if task.builtin == "notebook":
        return _notebook_records()
    if task.prompts is not None:
        if not task.prompts:
            raise PromptError("the prompts list is empty; give at least one prompt pair",
                              ("task", "prompts"))
        return list(task.prompts)
    if task.file is None:
        raise PromptError("kind: prompts needs prompts, file or builtin")
    return [rec for _, rec in _file_records(Path(base_dir or ".") / task.file)]


def _file_records(path: Path) -> list[tuple[int, PromptRecord]]:
    """The records of a JSONL prompts file, each with its line number."""
    from pydantic import ValidationError

    try:
        lines = read_text(path, "prompts file").splitlines()
    except InputFileError as exc:
        raise PromptError(str(exc), ("task", "file")) from None
    records: list[tuple[int, PromptRecord]] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append((n, PromptRecord.model_validate(json.loads(line))))
        except (json.JSONDecodeError, ValidationError) as exc:
            first = str(exc).splitlines()[0] if isinstance(exc, json.JSONDecodeError) else "; ".join(
                (f"{'.'.join(map(str, e['loc']))}: " if e["loc"] else "") + e["msg"]
                for e in exc.errors()
            )
            raise PromptError(f"{path.name} line {n}: {first}", ("task", "file")) from None
    if not records:
        raise PromptError(f"prompts file {path.name} holds no prompts", ("task", "file"))
    return records


def _word_shape(rec: PromptRecord) -> bool:
    """Whether the clean prompt names IO once and S twice (checked on words, no tokenizer)."""
    words = rec.clean.replace(",", " ").replace(".", " ").split()
    return words.count(rec.correct.strip()) == 1 and words.count(rec.incorrect.strip()) == 2


def task_positions(task: TaskSpec) -> set[str]:
    """Position names a task defines, known without a tokenizer."""
    if task.kind == "ioi":
        return set(IOI_POSITIONS)
    records = prompt_records(task)
    names = {"END"}
    if all(_word_shape(r) for r in records):
        names |= set(IOI_POSITIONS)
    explicit = [set(r.positions or {}) for r in records]
    return names | set.intersection(*explicit) if explicit else names


def build_dataset(
    task: TaskSpec,
    tokenizer: Any,
    *,
    prepend_bos: bool,
    n_prompts: int | None = None,
    seed: int | None = None,
    templates: list[int] | None = None,
) -> Dataset:
    """Tokenize a task into paired prompts; ``n_prompts``/``seed``/``templates`` override the task's."""
    n = n_prompts if n_prompts is not None else task.n_prompts
    seed = seed if seed is not None else task.seed
    if n is not None and n < 1:
        raise TaskError(f"n_prompts must be at least 1, not {n}")
    if seed < 0:
        raise TaskError(f"seed must be 0 or more, not {seed}")
    if task.kind == "ioi":
        return build_ioi(
            tokenizer, n_prompts=DEFAULT_IOI_PROMPTS if n is None else n, seed=seed,
            corruption=task.corruption or "abc", prepend_bos=prepend_bos,
            templates=templates if templates is not None else task.templates,
        )
    if task.builtin is None and task.prompts is None and task.file is not None:
        numbered = _file_records(Path(task.file))
        records = [rec for _, rec in numbered]
        # A problem in a prompts file is named by its file and line, not by its index.
        labels = [f"{Path(task.file).name} line {line}" for line, _ in numbered]
    else:
        records = prompt_records(task)
        labels = [f"prompt {i}" for i in range(len(records))]
    if n is not None:
        records = records[:n]
    return _tokenize_records(records, labels, tokenizer, prepend_bos,
                             inline=task.prompts is not None, builtin=task.builtin)


def _tokenize_records(
    records: list[PromptRecord], labels: list[str], tokenizer: Any, prepend_bos: bool, *,
    inline: bool, builtin: str | None,
) -> Dataset:
    bos = [tokenizer.bos_token_id] if prepend_bos else []
    unk = getattr(tokenizer, "unk_token_id", None)
    clean, corrupt, correct, incorrect, per_prompt = [], [], [], [], []
    for i, rec in enumerate(records):
        def loc(key: str, i: int = i) -> tuple[str | int, ...]:
            return ("task", "prompts", i, key) if inline else ("task", "file")

        def where(key: str, i: int = i) -> str:
            return labels[i] if inline else f"{labels[i]}, field {key!r}"

        toks = tuple(bos + tokenizer(rec.clean, add_special_tokens=False).input_ids)
        ctoks = tuple(bos + tokenizer(rec.corrupted, add_special_tokens=False).input_ids)
        if len(toks) != len(ctoks):
            raise PromptError(
                f"{where('corrupted')}: clean is {len(toks)} tokens but corrupted is {len(ctoks)}; "
                f"they must align position by position ({rec.clean!r} vs {rec.corrupted!r})",
                loc("corrupted"),
            )
        answer_ids = []
        for key in ("correct", "incorrect"):
            text = getattr(rec, key)
            ids = tokenizer(text, add_special_tokens=False).input_ids
            if len(ids) != 1 or ids[0] == unk:
                what = "an unknown token" if ids and ids[0] == unk else f"{len(ids)} tokens"
                raise PromptError(
                    f"{where(key)} ({rec.clean!r}): answer {text!r} is {what}; answers must be "
                    "a single token (mind the leading space: ' Mary')", loc(key)
                )
            answer_ids.append(ids[0])
        if answer_ids[0] == answer_ids[1]:
            raise PromptError(
                f"{where('incorrect')}: the correct and incorrect answers are the same token "
                f"({rec.correct!r} and {rec.incorrect!r}), so the logit difference is always 0",
                loc("incorrect"),
            )
        pos = ioi_positions(toks, *answer_ids) or {"END": len(toks) - 1}
        for name, index in (rec.positions or {}).items():
            if not -len(toks) <= index < len(toks):
                raise PromptError(
                    f"{where('positions')}: position {name}={index} is outside its {len(toks)} tokens",
                    loc("positions"),
                )
            pos[name] = index % len(toks)  # an index into the tokens the model sees, BOS included
        clean.append(toks)
        corrupt.append(ctoks)
        correct.append(answer_ids[0])
        incorrect.append(answer_ids[1])
        per_prompt.append(pos)
    if not records:
        raise PromptError("the task has no prompts", ("task",))
    shared = set.intersection(*(set(p) for p in per_prompt))
    dropped = set().union(*(set(p) for p in per_prompt)) - shared
    lengths = {n: k for k, n in enumerate(dict.fromkeys(len(t) for t in clean))}
    return Dataset(
        clean=tuple(clean),
        corrupt=tuple(corrupt),
        correct=tuple(correct),
        incorrect=tuple(incorrect),
        positions={name: tuple(p[name] for p in per_prompt) for name in sorted(shared)},
        template=tuple(lengths[len(t)] for t in clean),  # one "template" per token length
        prepend_bos=prepend_bos,
        clean_text=tuple(r.clean for r in records),
        corrupt_text=tuple(r.corrupted for r in records),
        notes={"task": "prompts", "builtin": builtin, "dropped_positions": sorted(dropped)},
    )


def hypothesis_dataset(hyp: Any, tokenizer: Any, *, default_prepend_bos: bool, **overrides: Any) -> Dataset:
    """:func:`build_dataset` for a loaded hypothesis; prompt problems become located errors."""
    try:
        return build_dataset(
            hyp.task, tokenizer, prepend_bos=hyp.resolve_prepend_bos(default_prepend_bos), **overrides
        )
    except PromptError as exc:
        raise HypothesisError(hyp.source, [hyp.problem(exc.loc, str(exc))]) from None
    except TaskError as exc:
        raise HypothesisError(hyp.source, [hyp.problem(("task",), str(exc))]) from None
