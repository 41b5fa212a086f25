"""Where the tests' files are: the repository root, the tests folder and its data folders.

Test modules sit at different depths (tests/, tests/<stage>/), so a path worked out from a
test module's own ``__file__`` breaks when the module moves; these do not.
"""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
ROOT = TESTS.parent
FIXTURES = TESTS / "fixtures" / "formats"
SHIPPED = ROOT / "hypotheses" / "ioi_smollm2_135m.yaml"
