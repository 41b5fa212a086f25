"""Scoring: the statistics that turn patched and ablated runs into verdicts (nulls first)."""
