"""One interface for the path-patching engines, and the one place that chooses between them.

An engine holds a model's clean and corrupted runs over one dataset and answers, per
prompt, the metric after patching an edge. :class:`~circuitspec.patching.exact.ExactEngine`
(hooks and full forward passes, the reference) and
:class:`~circuitspec.patching.fast.FastEngine` (cached runs, row-sparse recomputation)
implement :class:`PatchEngine`. :func:`select_engine` picks the fast engine where it
reproduces the model and the exact one otherwise; the engine it returns carries the
``name`` of the engine that really runs (``fast`` or ``reference``), which results.json
records.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Literal, Protocol

from torch import Tensor

from circuitspec.errors import EngineUnsupported, InvalidArgument
from circuitspec.patching.exact import ExactEngine
from circuitspec.patching.fast import FastEngine
from circuitspec.patching.types import Receiver, Semantics, Sender

if TYPE_CHECKING:
    from circuitspec.bridge.loading import LoadedModel
    from circuitspec.bridge.work import Work
    from circuitspec.data.dataset import Dataset

__all__ = ["ENGINES", "EngineName", "PatchEngine", "select_engine"]

EngineName = Literal["auto", "fast", "reference"]
ENGINES: tuple[str, ...] = ("auto", "fast", "reference")


class PatchEngine(Protocol):
    """Path patching over one model and dataset, the clean and corrupted runs cached."""

    name: str  # "fast" or "reference": the engine that really runs

    def baselines(self) -> tuple[Tensor, Tensor]:
        """Per-prompt clean and corrupted metric, in dataset order."""
        ...

    def patch(self, sender: Sender, receiver: Receiver, *, semantics: Semantics = "path",
              freeze_mlps: bool = False) -> Tensor:
        """Per-prompt patched metric for one edge, in dataset order."""
        ...

    def sweep(self, receiver: Receiver, senders: list[Sender], *, semantics: Semantics = "path",
              freeze_mlps: bool = False) -> Tensor:
        """[n_senders, N]: each sender patched alone into ``receiver``."""
        ...


def select_engine(model: LoadedModel, dataset: Dataset, name: EngineName = "auto",
                  work: Work | None = None) -> PatchEngine:
    """The fast engine where it reproduces the model (``auto`` and ``fast``), else the exact one.

    ``reference`` always runs the exact engine. When the fast engine cannot run this model
    (its architecture, or a failed self-check), the exact engine runs instead, with a
    warning that says why; its ``name`` (``reference``) is what the run records.
    """
    if name not in ENGINES:
        raise InvalidArgument(f"engine {name!r}: choose one of {', '.join(ENGINES)}")
    if name == "reference":
        return ExactEngine(model, dataset, work)
    try:
        return FastEngine(model, dataset, work=work)
    except EngineUnsupported as exc:
        warnings.warn(f"the fast engine falls back to the exact engine: {exc}", stacklevel=2)
        return ExactEngine(model, dataset, work)
