"""Ablation mechanisms: which heads are ablated, and how (mean over a separate pool, resample, zero),
at node level (node.py) and edge level (edge.py)."""
