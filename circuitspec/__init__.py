"""circuitspec: declarative circuit hypotheses for transformers, checked by path patching.

Write a circuit as a YAML file, then ``circuitspec verify`` it, or from Python::

    import circuitspec as cs

    hyp = cs.load_hypothesis("hypotheses/ioi_smollm2_135m.yaml")
    result = cs.verify(hyp, n_prompts=32)
    result.passed, result.edges[0].effect, result.circuit.faithfulness.value
    result.render("circuit.svg")

Importing this package loads nothing heavy: torch and the model code are
imported when a function needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Dataset",
    "Options",
    "Receiver",
    "Result",
    "Sender",
    "__version__",
    "load_hypothesis",
    "load_model",
    "path_patch",
    "render",
    "verify",
]

_LAZY = {
    "Dataset": "circuitspec.dataset",
    "Options": "circuitspec.verification",
    "Receiver": "circuitspec.engine",
    "Result": "circuitspec.results",
    "Sender": "circuitspec.engine",
    "load_hypothesis": "circuitspec.spec",
    "load_model": "circuitspec.models",
    "path_patch": "circuitspec.patching",
    "render": "circuitspec.rendering",
    "verify": "circuitspec.verification",
}

if TYPE_CHECKING:
    from circuitspec.dataset import Dataset
    from circuitspec.engine import Receiver, Sender
    from circuitspec.models import load_model
    from circuitspec.patching import path_patch
    from circuitspec.rendering import render
    from circuitspec.results import Result
    from circuitspec.spec import load_hypothesis
    from circuitspec.verification import Options, verify


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'circuitspec' has no attribute {name!r}")
