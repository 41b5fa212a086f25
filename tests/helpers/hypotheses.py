"""A tiny hypothesis whose verdicts are known: the whole tiny model as the circuit."""

from __future__ import annotations

from pathlib import Path


def write_hypothesis(path: Path, model_dir: Path, *, edges: str, claims: str) -> Path:
    path.write_text(
        f"""name: tiny-circuit
model: {model_dir}
task: {{kind: ioi, n_prompts: 12, seed: 0, corruption: abc}}
nodes:
  movers: {{role: name_mover, heads: [L2H0, L2H1, L2H2, L2H3, L1H0, L1H1, L1H2, L1H3, L0H0, L0H1, L0H2, L0H3]}}
edges:
{edges}
claims:
{claims}
"""
    )
    return path


# The whole model as the circuit: faithfulness is exactly 1, so the claim must hold. With
# every head patched jointly the END position sees exactly the corrupted run (same token
# there, every head's output corrupted, MLPs recomputed): effect -1.
TRUE_EDGES = "  - {from: movers, to: logits, at: END, expect: {sign: negative, min_effect: 0.5}}"


# Minimality of random-weight heads means nothing, so this file turns that claim off (the
# defaults would judge it otherwise); completeness is exactly 0 for the whole model.
TRUE_CLAIMS = "  faithfulness: {min: 0.9}\n  minimality: off"


# Patching cannot move the metric 10x beyond the corrupted run here (it lands on it exactly).
WRONG_EDGES = "  - {from: movers, to: logits, at: END, expect: {sign: negative, min_effect: 10.0}}"


# Input, MLP and head edges on a tiny model, for MIB's graph (`graph` is a line `graph: mib`, or empty).
MIB_HYPOTHESIS = """name: tiny-mib
model: {model}
task: {{kind: ioi, n_prompts: 6, seed: 3, corruption: abc}}
nodes:
  early: {{role: other, heads: [L0H2, MLP0]}}
  late:  {{role: name_mover, heads: [L2H1, L2H3]}}
edges:
  - {{from: input, to: early, via: q, at: END}}
  - {{from: early, to: late, via: v, at: S2}}
  - {{from: late, to: logits, at: END}}
claims:
  faithfulness: {{min: 0.05}}
{graph}"""


# The tiny 3x4 model's heads as one group per layer (a format string: braces doubled).
LAYER_GROUPS = """nodes:
  l0: {{role: other, heads: [L0H0, L0H1, L0H2, L0H3]}}
  l1: {{role: other, heads: [L1H0, L1H1, L1H2, L1H3]}}
  l2: {{role: name_mover, heads: [L2H0, L2H1, L2H2, L2H3]}}
"""
# Every wire among those groups and into the logits: with edge_positions every, the model.
COMPLETE_EDGES = [f"  - {{from: {a}, to: {b}, via: {v}, at: END}}"
                  for a, b in (("l0", "l1"), ("l0", "l2"), ("l1", "l2")) for v in "qkv"]
COMPLETE_EDGES += [f"  - {{from: {a}, to: logits, at: END}}" for a in ("l0", "l1", "l2")]

COMPLETE = """name: complete-graph
model: {model}
task: {{kind: ioi, n_prompts: 10, seed: 0, corruption: abc}}
""" + LAYER_GROUPS + """edges:
{edges}
edge_positions: every  # the complete graph at every position is the model
claims:
  faithfulness: {{min: 0.9}}
  minimality: off  # random weights: no head need matter
  edges: {{min_effect: 0.0, sign: any}}
"""


def write_complete_hypothesis(path: Path, model_dir: Path) -> Path:
    """The whole tiny model as its complete graph (every head, every wire, at every position):
    the model itself at node and at edge level."""
    path.write_text(COMPLETE.format(model=model_dir, edges="\n".join(COMPLETE_EDGES)))
    return path
