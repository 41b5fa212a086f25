"""Typed errors for everything a user can get wrong.

Every error a user can cause is a :class:`CircuitSpecError`: the CLI prints its
message (no traceback) and exits with status 2. Errors about a hypothesis file
carry the file, line, column and field so the message points at the mistake.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass


class CircuitSpecError(Exception):
    """Base class for errors caused by user input (exit status 2)."""


class ModelLoadError(CircuitSpecError):
    """A model reference could not be resolved or loaded."""


class InputFileError(CircuitSpecError):
    """An input file cannot be read as text: missing, a folder, unreadable, binary, not UTF-8, empty."""

    def __init__(self, path: str, reason: str, line: int | None = None):
        self.path, self.reason, self.line = path, reason, line
        super().__init__(f"{path}{f':{line}' if line else ''}: {reason}")


class TaskError(CircuitSpecError):
    """A dataset or task cannot produce valid prompts (multi-token answers, misaligned positions)."""


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
