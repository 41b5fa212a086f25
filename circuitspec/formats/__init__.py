"""The field's circuit formats: EAP-IG/MIB JSON and .pt, ACDC's edges.pkl, auto-circuit edges.

``circuitspec import`` reads them into a hypothesis, ``circuitspec export``
writes a hypothesis or a verified result into them; both print what the
conversion lost or assumed. See docs/formats.md.
"""

from circuitspec.formats.convert import export_file, import_file
from circuitspec.formats.graph import FORMATS, FormatError, Note

__all__ = ["FORMATS", "FormatError", "Note", "export_file", "import_file"]
