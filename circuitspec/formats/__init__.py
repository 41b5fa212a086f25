"""The field's circuit formats: EAP-IG/MIB JSON and .pt, ACDC's edges.pkl, auto-circuit edges.

``circuitspec import`` reads them into a hypothesis, ``circuitspec export``
writes a hypothesis or a verified result into them; both print what the
conversion lost or assumed. See docs/formats.md.
"""
