"""circuitspec: declarative circuit hypotheses for transformers, checked by path patching.

Write a circuit as a YAML file, then ``circuitspec verify`` it (or call
:func:`verify` from Python). Importing this package loads nothing heavy.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
