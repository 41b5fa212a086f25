"""Attention-pattern signatures of the IOI head classes (Wang et al. 2022).

For every head, the mean attention (over clean prompts) between named positions:

- END -> IO (high) and END -> S1/S2 (low): name movers copy the attended name;
- END -> S2: S-inhibition heads attend to the repeated name;
- S2 -> S1: duplicate-token heads find the earlier copy of the current token;
- S2 -> S1+1: induction heads attend to the token after the earlier copy;
- S1+1 -> S1: previous-token heads attend one token back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from circuitspec.analyses.grid import Grid, head_label
from circuitspec.analyses.runs import capture, groups_of
from circuitspec.spec.heads import Head

if TYPE_CHECKING:
    from circuitspec.bridge.loading import LoadedModel
    from circuitspec.data.dataset import Dataset


SIGNATURES = (
    ("END", "IO"), ("END", "S1"), ("END", "S2"), ("S2", "S1"), ("S2", "S1+1"), ("S1+1", "S1"),
)


def signature_name(query: str, key: str) -> str:
    return f"{query}->{key}"


@torch.no_grad()
def attention_summaries(model: LoadedModel, dataset: Dataset) -> Grid:
    """[heads, signatures]: mean attention from one named position to another, in [0, 1]."""
    n_layers, n_heads = model.info.n_layers, model.info.n_heads
    pairs = [(q, k) for q, k in SIGNATURES if q in dataset.positions and k in dataset.positions]
    device = model.bridge.W_U.device
    total = torch.zeros(n_layers, n_heads, len(pairs), device=device)
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(n_layers)]
    for group in groups_of(dataset, model.bridge):
        _, acts = capture(model.bridge, group.clean, whole=names, end=group.positions["END"])
        rows = torch.arange(group.clean.shape[0], device=device)
        for layer, name in enumerate(names):
            pattern = acts[name]  # [b, head, q, k]
            for j, (q, k) in enumerate(pairs):
                picked = pattern[rows, :, group.positions[q], group.positions[k]]  # [b, head]
                total[layer, :, j] += picked.sum(0)
    values = (total / len(dataset)).reshape(n_layers * n_heads, len(pairs)).cpu()
    rows_ = tuple(head_label(lay, h) for lay in range(n_layers) for h in range(n_heads))
    return Grid(
        "attention", values, rows_, tuple(signature_name(q, k) for q, k in pairs), "head",
        "query->key", "mean attention probability over clean prompts",
    )


@dataclass(frozen=True)
class AttentionMaps:
    """Attention patterns of chosen heads on one prompt."""

    tokens: tuple[str, ...]
    heads: tuple[Head, ...]
    patterns: Tensor  # [heads, query, key]
    prompt: int

    def as_grid(self) -> Grid:
        """Rows: (head, query token), columns: key tokens; tokens labelled ``index:text``."""
        toks = [f"{i}:{t!r}" for i, t in enumerate(self.tokens)]
        rows = tuple(f"{head_label(*h)} {q}" for h in self.heads for q in toks)
        n = len(self.tokens)
        return Grid("attention_maps", self.patterns.reshape(len(self.heads) * n, n).float(), rows,
                    tuple(toks), "head and query", "key",
                    f"attention probability on clean prompt {self.prompt}")


@torch.no_grad()
def attention_maps(
    model: LoadedModel, dataset: Dataset, heads: Sequence[Head], *, prompt: int = 0
) -> AttentionMaps:
    """The full attention pattern of ``heads`` on clean prompt ``prompt``."""
    tokens = torch.tensor([dataset.clean[prompt]], device=model.bridge.W_U.device)
    layers = sorted({lay for lay, _ in heads})
    names = [f"blocks.{lay}.attn.hook_pattern" for lay in layers]
    _, acts = capture(model.bridge, tokens, whole=names)
    maps = torch.stack([acts[f"blocks.{lay}.attn.hook_pattern"][0, h] for lay, h in heads]).cpu()
    text = tuple(model.tokenizer.decode([t]) for t in dataset.clean[prompt])
    return AttentionMaps(text, tuple(heads), maps, prompt)
