"""Tiny checkpoints whose patching results are known by construction, for diff and sweep tests.

:func:`save_silenced` copies a tiny Llama with the attention output projection of some
layers set to zero, so those layers' heads write nothing. Two facts follow by hand:

- the heads of a silenced layer have effect exactly 0 on every edge they send;
- if every layer but the last is silenced, the last layer's heads are the only way
  information moves between positions, so patching all of them (to the logits, at
  END) gives END exactly its corrupted-run residual: effect exactly -1.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from helpers.factories import save_tiny_model

LATE_HYPOTHESIS = """name: tiny-late-heads
model: {model}
task: {{kind: ioi, n_prompts: 12, seed: 0, corruption: abc}}
nodes:
  late: {{role: name_mover, heads: [L2H0, L2H1, L2H2, L2H3]}}
edges:
  - {{from: late, to: logits, at: END, expect: {{sign: negative, min_effect: 0.5}}}}
# Minimality of random-weight heads means nothing (the default claim would judge it).
claims:
  minimality: off
"""


def save_silenced(path: Path, layers: tuple[int, ...], seed: int = 0) -> Path:
    """A tiny 3-layer Llama (seeded like ``save_tiny_model``) with ``layers``' o_proj zeroed."""
    import torch
    from transformers import AutoModelForCausalLM

    base = save_tiny_model("llama", path.with_name(path.name + ".base"), seed=seed)
    model = AutoModelForCausalLM.from_pretrained(base)
    with torch.no_grad():
        for layer in layers:
            model.model.layers[layer].self_attn.o_proj.weight.zero_()
    model.save_pretrained(path)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (base / name).exists():
            shutil.copy(base / name, path / name)
    shutil.rmtree(base)
    return path


def write_late_hypothesis(path: Path, model: Path | str) -> Path:
    path.write_text(LATE_HYPOTHESIS.format(model=model))
    return path
