"""The mean-ablation pool: per-position means over a separate set of corrupted prompts.

Mean ablation replaces a head's output by its average over the corruption distribution
(Wang et al. 2022: the ABC distribution). Taking that average over the corrupted partners
of the very prompts being scored makes it an in-sample mean over a handful of prompts
(with 1-4 prompts per template at n = 32 it is partly resample ablation), makes the
statistic move with ``n_prompts`` on the same prompts, and ties the per-prompt values to
one another. The pool here is instead

- *separate*: ABC prompts generated from their own seed, none equal to a scored prompt;
- *large enough*: at least ``per_template_min`` prompts (default 50) per mean;
- *pooled by token layout*: one mean per token length, over every template of that
  length, per position. One mean per template would need 50 prompts for each of the
  ~20 templates a 32-prompt run touches (about 1,000 extra prompts through the model,
  two to three minutes on a laptop CPU for SmolLM2); per length it is 5-7 means, about
  300 prompts. Every ABC prompt holds three fresh random names, so a length mean still
  carries no information about the scored prompt's IO or S; it also averages over the
  template words at each index, which ablates a little more than a per-template mean.

A pool smaller than ``MIN_PER_MEAN`` per mean, or one that is not disjoint from the scored
prompts (``kind: prompts`` has no generator, so its pool is its own corrupted prompts),
is *insufficient*: it is recorded as such in ``results.json`` (``settings.mean_pool``) and
a mean-ablation claim cannot be verified on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from circuitspec.ioi import build_ioi

if TYPE_CHECKING:
    import torch

    from circuitspec.bridge.work import Work
    from circuitspec.dataset import Dataset
    from circuitspec.models import LoadedModel

__all__ = ["DEFAULT_PER_MEAN", "MIN_PER_MEAN", "MeanPool", "build_mean_pool", "pool_seed"]

DEFAULT_PER_MEAN = 50
MIN_PER_MEAN = 20  # below this a "mean" is too close to resampling a few prompts
_SEED_OFFSET = 7_919  # the pool's default seed is the run's seed plus this


def pool_seed(seed: int) -> int:
    """The pool's default seed for a run with prompt seed ``seed`` (never equal to it)."""
    return seed + _SEED_OFFSET


@dataclass(frozen=True)
class MeanPool:
    """Per-position means of every head's z and every MLP output, one per token length."""

    means: dict[int, tuple[list[torch.Tensor], list[torch.Tensor]]]
    """token length -> (z per layer [pos, heads, d_head], MLP output per layer [pos, d_model])."""
    counts: dict[int, int]
    """token length -> prompts averaged."""
    per_template_min: int
    """Prompts asked for per mean."""
    seed: int | None
    """Seed of the pool's generator (None: not generated)."""
    built: str
    """How the pool was made, in words."""
    disjoint: bool = True
    """Whether no pool prompt is a scored prompt."""
    excluded: int = 0
    """Generated prompts dropped because they equal a scored prompt."""
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return sum(self.counts.values())

    @property
    def sufficient(self) -> bool:
        """Large enough and disjoint: a mean-ablation claim may be verified on it."""
        return self.disjoint and bool(self.counts) and min(self.counts.values()) >= MIN_PER_MEAN

    def mean_for(self, length: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        if length not in self.means:
            raise ValueError(f"the mean pool has no prompts of {length} tokens")
        return self.means[length]

    def info(self) -> dict[str, Any]:
        """``settings.mean_pool`` in results.json."""
        return {"n": self.n, "per_template_min": self.per_template_min,
                "smallest_mean": min(self.counts.values()) if self.counts else 0,
                "seed": self.seed, "grouping": "token_length",
                "counts": {str(k): v for k, v in sorted(self.counts.items())},
                "disjoint": self.disjoint, "excluded": self.excluded,
                "sufficient": self.sufficient, "min_per_mean": MIN_PER_MEAN, "built": self.built}


def _capture_sums(model: LoadedModel, rows: list[tuple[int, ...]], max_tokens: int,
                  work: Work | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Sum over ``rows`` (token sequences of one length) of every head's z and MLP output."""
    import torch

    bridge = model.bridge
    n_layers = int(bridge.cfg.n_layers)
    device = next(bridge.parameters()).device
    sums_z: list[Any] = [0.0] * n_layers
    sums_m: list[Any] = [0.0] * n_layers
    step = max(1, max_tokens // len(rows[0]))

    def add(store: list[Any], layer: int) -> Any:
        def hook(x: torch.Tensor, hook: Any) -> torch.Tensor:
            store[layer] = store[layer] + x.detach().double().sum(0)
            return x
        return hook

    hooks = [(f"blocks.{L}.attn.hook_z", add(sums_z, L)) for L in range(n_layers)]
    hooks += [(f"blocks.{L}.hook_mlp_out", add(sums_m, L)) for L in range(n_layers)]
    # Nothing reads the logits: let one position through the unembedding.
    hooks.append(("unembed.hook_in", lambda x, hook: x[:, -1:]))
    with torch.no_grad():
        for s in range(0, len(rows), step):
            tokens = torch.tensor(rows[s : s + step], dtype=torch.long, device=device)
            bridge.run_with_hooks(tokens, fwd_hooks=hooks)  # type: ignore[arg-type]
            if work is not None:
                work.add(tokens.shape[0], tokens.shape[1], n_layers)
    return sums_z, sums_m


def _finish(sums: dict[int, tuple[list[Any], list[Any]]], counts: dict[int, int], dtype: Any
            ) -> dict[int, tuple[list[torch.Tensor], list[torch.Tensor]]]:
    return {k: ([z.div(counts[k]).to(dtype) for z in zs], [m.div(counts[k]).to(dtype) for m in ms])
            for k, (zs, ms) in sums.items()}


def build_mean_pool(model: LoadedModel, scored: Dataset, *, generate: bool, seed: int,
                    per_template_min: int = DEFAULT_PER_MEAN, max_tokens: int = 8192,
                    work: Work | None = None) -> MeanPool:
    """The pool for ``scored``: one mean per token length the scored prompts have.

    ``generate``: draw fresh ABC prompts from the IOI generator with ``seed`` (the first
    ``per_template_min`` of each needed length, in generation order, so the means do not
    depend on how many prompts are scored); otherwise average the scored prompts' own
    corrupted partners by length (in-sample, recorded as not disjoint).
    """
    dtype = next(model.bridge.parameters()).dtype
    lengths = sorted({len(t) for t in scored.clean})
    taken: dict[int, list[tuple[int, ...]]] = {k: [] for k in lengths}
    if not generate:
        for toks in scored.corrupt:
            taken[len(toks)].append(toks)
        sums = {k: _capture_sums(model, rows, max_tokens, work) for k, rows in taken.items()}
        counts = {k: len(v) for k, v in taken.items()}
        return MeanPool(_finish(sums, counts, dtype), counts, per_template_min, None,
                        "in-sample: the scored prompts' own corrupted partners, per token length "
                        "(this task has no generator to draw a separate pool from)", disjoint=False)
    forbidden = set(scored.corrupt) | set(scored.clean)
    excluded, n = 0, per_template_min * 4 * len(lengths)
    while True:
        pool = build_ioi(model.tokenizer, n_prompts=n, seed=seed, corruption="abc",
                         prepend_bos=scored.prepend_bos)
        taken = {k: [] for k in lengths}
        excluded = 0
        for toks in pool.corrupt:
            if len(toks) not in taken or len(taken[len(toks)]) >= per_template_min:
                continue
            if toks in forbidden:
                excluded += 1
                continue
            taken[len(toks)].append(toks)
        if all(len(v) >= per_template_min for v in taken.values()) or n >= 400 * per_template_min:
            break
        n *= 2
    counts = {k: len(v) for k, v in taken.items()}
    sums = {k: _capture_sums(model, rows, max_tokens, work) for k, rows in taken.items() if rows}
    missing = [k for k, c in counts.items() if not c]
    if missing:
        raise ValueError(f"the IOI generator made no prompt of {missing} tokens for the mean pool")
    return MeanPool(_finish(sums, counts, dtype), counts, per_template_min, seed,
                    f"ABC prompts from the IOI generator (seed {seed}), none equal to a scored prompt; "
                    "one per-position mean per token length, over every template of that length",
                    excluded=excluded)
