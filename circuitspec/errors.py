"""Typed errors for everything a user can get wrong, and every other error class of the package.

Every error a user can cause is a :class:`CircuitSpecError`: the CLI prints its
message (no traceback) and exits with status 2. Errors about a hypothesis file
carry the file, line, column and field so the message points at the mistake.

The tree::

    CircuitSpecError
        InvalidArgument (also a ValueError): an option or API argument outside its choices
        ModelLoadError: a model reference that cannot be resolved or loaded
        InputFileError: a file that cannot be read as text
        TaskError: prompts that cannot be built
            PromptError: one prompt, located in the hypothesis file
        HypothesisError: an invalid hypothesis file, every problem located
            SweepError: an invalid sweep file
        ResultFileError: a results.json missing a field or holding a wrong value
        FormatError: a circuit file (EAP-IG, ACDC, auto-circuit) unreadable or not fitting the model
        RenderError: a diagram that cannot be drawn as asked
        EngineUnsupported: the fast engine cannot reproduce this model (the exact one runs)
    CircuitClaimFailed: a hypothesis whose claims did not all hold, under pytest
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass


class CircuitSpecError(Exception):
    """Base class for errors caused by user input (exit status 2)."""


class InvalidArgument(CircuitSpecError, ValueError):
    """A value passed to the Python API or an option is outside its choices or range. Also a
    ValueError, so callers that catch ValueError keep working."""


class ModelLoadError(CircuitSpecError):
    """A model reference could not be resolved or loaded."""


class InputFileError(CircuitSpecError):
    """An input file cannot be read as text: missing, a folder, unreadable, binary, not UTF-8, empty."""

    def __init__(self, path: str, reason: str, line: int | None = None):
        self.path, self.reason, self.line = path, reason, line
        super().__init__(f"{path}{f':{line}' if line else ''}: {reason}")


class EngineUnsupported(CircuitSpecError):
    """The fast engine cannot reproduce this model exactly (an unsupported architecture, or its
    self-check disagrees with the bridge); :func:`circuitspec.patching.engine.select_engine`
    then runs the exact engine instead."""


class TaskError(CircuitSpecError):
    """A dataset or task cannot produce valid prompts (multi-token answers, misaligned positions)."""


class PromptError(TaskError):
    """A problem with one prompt; ``loc`` is its place in the hypothesis file."""

    def __init__(self, message: str, loc: tuple[str | int, ...] = ("task",)):
        super().__init__(message)
        self.loc = loc


class ResultFileError(CircuitSpecError):
    """A ``results.json`` file is missing a field or holds a value of the wrong kind."""


class FormatError(CircuitSpecError):
    """A circuit file is unreadable, foreign, or does not fit the model (exit status 2)."""


class RenderError(CircuitSpecError):
    """The diagram cannot be drawn as asked (unknown file type, unreadable head name)."""


class CircuitClaimFailed(Exception):
    """A hypothesis whose claims did not all hold (the pytest plugin's failure)."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a hypothesis file, located as precisely as we can."""

    field: str
    message: str
    line: int | None = None
    column: int | None = None

    def format(self, path: str) -> str:
        where = path
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"


class HypothesisError(CircuitSpecError):
    """A hypothesis file is invalid; holds every problem found, each with its location."""

    def __init__(self, path: str, problems: list[Problem]):
        self.path = path
        self.problems = problems
        super().__init__("\n".join(p.format(path) for p in problems))


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """A ' (did you mean X?)' suffix naming the closest valid choice, or ''."""
    close = difflib.get_close_matches(str(value), list(choices), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


class SweepError(HypothesisError):
    """A sweep file is invalid; every problem located in the file."""
