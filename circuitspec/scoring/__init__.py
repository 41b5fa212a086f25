"""Circuit scores that follow other benchmarks' definitions (MIB's edge-level faithfulness)."""
