"""The shared vocabulary of path patching: heads, senders, receivers, the logits, length groups.

A :class:`Sender` is what is patched (heads and MLPs, optionally at named positions); a
:class:`Receiver` is where the change is read (heads' q, k or v input at a position, or
:data:`LOGITS`). Both engines (:mod:`.exact`, :mod:`.fast`) and every caller speak these
types; :func:`logit_diff` is the one END logit difference the metric is built from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor

from circuitspec.errors import CircuitSpecError
from circuitspec.spec.heads import Head

if TYPE_CHECKING:
    from circuitspec.data.dataset import Dataset

__all__ = [
    "LOGITS", "SEMANTICS", "Group", "answer_diff", "Head", "Receiver", "Semantics", "Sender", "Via",
    "check_semantics", "dataset_groups", "logit_diff", "position_mask",
]

Via = Literal["q", "k", "v"]
Semantics = Literal["path", "direct"]
SEMANTICS: tuple[str, ...] = ("path", "direct")


def check_semantics(semantics: str) -> None:
    """Both engines branch on the semantics; anything but the two names is refused here, so
    an unknown value cannot run path patching on one engine and direct on the other."""
    if semantics not in SEMANTICS:
        raise CircuitSpecError(f"semantics {semantics!r}: choose one of {', '.join(SEMANTICS)}")


@dataclass(frozen=True)
class Sender:
    """What is patched: heads and/or MLPs, at every position or at named ones."""

    heads: tuple[Head, ...] = ()
    mlps: tuple[int, ...] = ()
    positions: tuple[str, ...] | None = None  # None: every position

    @property
    def last_layer(self) -> int:
        return max([layer for layer, _ in self.heads] + list(self.mlps))


@dataclass(frozen=True)
class Receiver:
    """Where the change is read: heads' q, k or v input at a named position, or the logits."""

    heads: tuple[Head, ...] = ()
    via: Via | None = None
    at: str | None = "END"  # None: every position

    @property
    def is_logits(self) -> bool:
        return not self.heads

    @property
    def layers(self) -> list[int]:
        return sorted({layer for layer, _ in self.heads})


LOGITS = Receiver()


@dataclass(frozen=True)
class Group:
    """One length group of the dataset as tensors (prompts of equal token length)."""

    index: Tensor  # positions of these prompts in the dataset
    clean: Tensor  # [batch, pos] token ids
    corrupt: Tensor
    correct: Tensor  # [batch]
    incorrect: Tensor
    positions: dict[str, Tensor]  # name -> [batch] token index


def dataset_groups(dataset: Dataset, device: torch.device | str = "cpu") -> list[Group]:
    """The dataset's length groups as tensors on ``device`` (the model's: tokens, answers and
    positions index the model's activations there)."""
    def tensor(values: Sequence[Any]) -> Tensor:
        return torch.tensor(values, dtype=torch.long, device=device)

    groups = []
    for idx in dataset.length_groups():
        sub = dataset.subset(idx)
        groups.append(
            Group(
                index=tensor(idx),
                clean=tensor(sub.clean),
                corrupt=tensor(sub.corrupt),
                correct=tensor(sub.correct),
                incorrect=tensor(sub.incorrect),
                positions={k: tensor(v) for k, v in sub.positions.items()},
            )
        )
    return groups


def answer_diff(end_logits: Tensor, correct: Tensor, incorrect: Tensor) -> Tensor:
    """The metric, per row: logit(correct) - logit(incorrect), from the END logits [rows, vocab].
    Every stage computes the logit difference here."""
    rows = torch.arange(end_logits.shape[0], device=end_logits.device)
    return end_logits[rows, correct] - end_logits[rows, incorrect]


def logit_diff(logits: Tensor, group: Group) -> Tensor:
    """Per-prompt logit(correct) - logit(incorrect) at END, from logits at every position."""
    end = logits[torch.arange(logits.shape[0], device=logits.device), group.positions["END"]]
    return answer_diff(end, group.correct, group.incorrect)


def position_mask(group: Group, names: tuple[str, ...] | None, n_pos: int) -> Tensor:
    """[batch, pos] bool: True at the named positions of each prompt (all if names is None)."""
    batch, device = group.clean.shape[0], group.clean.device
    if names is None:
        return torch.ones(batch, n_pos, dtype=torch.bool, device=device)
    mask = torch.zeros(batch, n_pos, dtype=torch.bool, device=device)
    for name in names:
        mask[torch.arange(batch, device=device), group.positions[name]] = True
    return mask
