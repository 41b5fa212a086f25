"""Scoring: the statistics that turn patched and ablated runs into verdicts (nulls), and circuit
scores that follow other benchmarks' definitions (MIB's edge-level faithfulness)."""
