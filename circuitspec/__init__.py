"""circuitspec: declarative circuit hypotheses for transformers, checked by path patching.

Write a circuit as a YAML file, then ``circuitspec verify`` it, or from Python::

    import circuitspec as cs

    hyp = cs.load_hypothesis("hypotheses/ioi_smollm2_135m.yaml")
    result = cs.verify(hyp, n_prompts=32)
    result.passed, result.edges[0].effect, result.circuit.faithfulness.value
    cs.render(result, "circuit.svg")

Importing this package loads nothing heavy: torch and the model code are
imported when a function needs them (``_LAZY`` maps each public name to its module).
Type checkers read the same names from ``__init__.pyi``, so this module imports none
of the package's own modules.
"""

from __future__ import annotations

import importlib
from typing import Any

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
    "Dataset": "circuitspec.data.dataset",
    "Options": "circuitspec.verification.settings",
    "Receiver": "circuitspec.patching.types",
    "Result": "circuitspec.results",
    "Sender": "circuitspec.patching.types",
    "load_hypothesis": "circuitspec.spec.load",
    "load_model": "circuitspec.bridge.loading",
    "path_patch": "circuitspec.patching.api",
    "render": "circuitspec.output.diagram",
    "verify": "circuitspec.verification.run",
}

def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'circuitspec' has no attribute {name!r}")
