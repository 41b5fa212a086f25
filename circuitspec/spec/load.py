"""Loading a hypothesis file: parsed with positions, validated, checked, every problem located.

:func:`load_hypothesis` raises one :class:`~circuitspec.errors.HypothesisError` holding every
problem of the file; :func:`check_against_model` checks head and MLP indices against a
model's shape.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from circuitspec.errors import HypothesisError, InputFileError, Problem
from circuitspec.spec.checks import semantic_problems
from circuitspec.spec.heads import parse_member
from circuitspec.spec.locate import compose_located, pydantic_problems
from circuitspec.spec.schema import Hypothesis, field_names
from circuitspec.spec.textfile import read_text

__all__ = ["check_against_model", "load_hypothesis", "load_with_problems", "model_problems"]


def load_hypothesis(path: str | Path) -> Hypothesis:
    """Parse, validate and check a hypothesis file; raise HypothesisError with every problem."""
    hyp, problems = load_with_problems(path)
    if problems or hyp is None:
        raise HypothesisError(str(path), problems)
    return hyp


def load_with_problems(path: str | Path) -> tuple[Hypothesis | None, list[Problem]]:
    """The hypothesis (None if it does not parse into one) and every problem found."""
    path = Path(path)
    try:
        text = read_text(path, "hypothesis file", allow_empty=True)
    except InputFileError as exc:
        return None, [Problem("", exc.reason, exc.line)]
    data, locations, problems = compose_located(text)
    if data is None and not problems:
        problems.append(Problem("", "the file is empty; see `circuitspec schema` for the format"))
    if not isinstance(data, dict):
        if data is not None:
            problems.append(Problem("", "a hypothesis file must be a mapping (name, model, ...)", 1, 1))
        return None, problems
    try:
        hyp = Hypothesis.model_validate(data)
    except ValidationError as exc:
        located = {p.field for p in problems}  # e.g. a rejected tag already explains the value
        problems += [p for p in pydantic_problems(exc, data, locations, field_names()) if p.field not in located]
        return None, problems
    if hyp.task.file is not None:
        resolved = (path.parent / hyp.task.file).resolve()
        hyp = hyp.model_copy(update={"task": hyp.task.model_copy(update={"file": str(resolved)})})
    hyp._source, hyp._locations = str(path), locations
    problems += [hyp.problem(loc, msg) for loc, msg in semantic_problems(hyp)]
    return hyp, problems


def check_against_model(hyp: Hypothesis, info: Any) -> None:
    """Check every head and MLP index against ``info`` (a models.ModelInfo)."""
    problems = model_problems(hyp, info)
    if problems:
        raise HypothesisError(hyp.source, problems)


def model_problems(hyp: Hypothesis, info: Any) -> list[Problem]:
    """Heads and MLPs that ``info`` (a models.ModelInfo) does not have, each located."""
    problems = []
    for group, spec in hyp.nodes.items():
        for i, ref in enumerate(spec.heads):
            kind, layer, head = parse_member(ref)
            if layer >= info.n_layers:
                msg = f"{ref}: {info.name} has layers 0-{info.n_layers - 1}"
            elif head is not None and head >= info.n_heads:
                msg = f"{ref}: {info.name} has heads 0-{info.n_heads - 1} in each layer"
            else:
                continue
            problems.append(hyp.problem(("nodes", group, "heads", i), msg))
    return problems
