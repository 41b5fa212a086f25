"""The mean-ablation pool: per-position means over a separate set of corrupted prompts.

Mean ablation replaces a head's output by its average over the corruption distribution
(Wang et al. 2022: the ABC distribution, per template). Taking that average over the
corrupted partners of the very prompts being scored makes it an in-sample mean over a
handful of prompts (with 1-4 prompts per template at n = 32 it is partly resample
ablation), makes the statistic move with ``n_prompts`` on the same prompts, and ties the
per-prompt values to one another. The pool here is instead

- *separate*: ABC prompts generated from their own seed, none equal to a scored prompt;
- *large enough*: at least ``per_template_min`` prompts (default 50) per mean;
- *per token layout*: one mean per :func:`layout_key`, the prompt's length and the index
  of every named position (IO, S1, S1+1, S2, and, END), over the pool prompts with that
  layout, per position. Every template has one layout, so this is Wang et al.'s
  per-template mean, except that templates whose layouts coincide share one (with the
  SmolLM2 tokenizer 30 templates have 28 layouts: 8/9 and 23/24 share). A mean per token
  length, as before, averaged templates whose names sit at different indices: at one
  index it mixed the S2 name of one template with a function word of another. Cost: a
  32-prompt SmolLM2 run touches about 18 layouts (6 lengths), so about 900 pool prompts
  through the model instead of 300.

Which pool prompts make a mean depends only on the pool's seed and ``per_template_min``:
the first ``per_template_min`` of each layout in generation order (the generator is
prefix-stable), never on the scored prompts. No pool prompt is dropped for being a
scored prompt (dropping one would make the means depend on which, and how many, prompts
are scored); instead a pool that shares a prompt with the scored set is refused with a
:class:`~circuitspec.errors.TaskError` naming ``--mean-pool-seed``. An ABC pool prompt
has three distinct names, so it can never equal a clean IOI prompt (S is repeated), and
equals a scored ABC partner only if template, the three names in order, place and object
all agree: about one chance in 4·10^10 per pair with SmolLM2's 149 names.

A pool smaller than ``MIN_PER_MEAN`` per mean, or one that is not disjoint from the scored
prompts (``kind: prompts`` has no generator, so its pool is its own corrupted prompts,
averaged per layout too), is *insufficient*: it is recorded as such in ``results.json``
(``settings.mean_pool``) and a mean-ablation claim cannot be verified on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from circuitspec.bridge.device import pass_size
from circuitspec.data.ioi import build_ioi
from circuitspec.errors import TaskError

if TYPE_CHECKING:
    import torch

    from circuitspec.bridge.loading import LoadedModel
    from circuitspec.bridge.work import Work
    from circuitspec.data.dataset import Dataset

__all__ = ["DEFAULT_PER_MEAN", "MIN_PER_MEAN", "Layout", "MeanPool", "build_mean_pool", "layout_key",
           "pool_seed"]

DEFAULT_PER_MEAN = 50
MIN_PER_MEAN = 20  # below this a "mean" is too close to resampling a few prompts
_SEED_OFFSET = 7_919  # the pool's default seed is the run's seed plus this

Layout = tuple[int, tuple[tuple[str, int], ...]]
"""(token length, ((position name, index), ...) sorted by name): what a mean is keyed by."""


def pool_seed(seed: int) -> int:
    """The pool's default seed for a run with prompt seed ``seed`` (never equal to it)."""
    return seed + _SEED_OFFSET


def layout_key(dataset: Dataset, i: int) -> Layout:
    """Prompt ``i``'s token layout: its length and the index of every named position."""
    return len(dataset.clean[i]), tuple((name, dataset.positions[name][i]) for name in sorted(dataset.positions))


def _label(key: Layout) -> str:
    """``15:END=14,IO=2,...`` for results.json."""
    return f"{key[0]}:" + ",".join(f"{name}={at}" for name, at in key[1])


@dataclass(frozen=True)
class MeanPool:
    """Per-position means of every head's z and every MLP output, one per token layout."""

    means: dict[Layout, tuple[list[torch.Tensor], list[torch.Tensor]]]
    """layout -> (z per layer [pos, heads, d_head], MLP output per layer [pos, d_model])."""
    counts: dict[Layout, int]
    """layout -> prompts averaged."""
    per_template_min: int
    """Prompts asked for per mean."""
    seed: int | None
    """Seed of the pool's generator (None: not generated)."""
    built: str
    """How the pool was made, in words."""
    disjoint: bool = True
    """Whether no pool prompt is a scored prompt."""
    excluded: int = 0
    """Generated prompts dropped because they equal a scored prompt (always 0: such a pool is refused)."""
    notes: dict[str, Any] = field(default_factory=dict)
    prompts: dict[Layout, tuple[tuple[int, ...], ...]] = field(default_factory=dict)
    """layout -> the pool prompts averaged (token sequences), so a run on other prompts can
    reuse a mean after checking it is held out from them too."""

    @property
    def n(self) -> int:
        return sum(self.counts.values())

    @property
    def sufficient(self) -> bool:
        """Large enough and disjoint: a mean-ablation claim may be verified on it."""
        return self.disjoint and bool(self.counts) and min(self.counts.values()) >= MIN_PER_MEAN

    def mean_for(self, key: Layout) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The means for prompts of layout ``key`` (see :func:`layout_key`)."""
        if key not in self.means:
            raise ValueError(f"the mean pool has no prompts of layout {_label(key)}")
        return self.means[key]

    def extends_to(self, seed: int, per_template_min: int) -> bool:
        """Whether this pool's means are those a generated pool with ``seed`` and
        ``per_template_min`` has for the same layouts (they depend on nothing else, see
        :func:`build_mean_pool`), so a run on other prompts can start from them."""
        return (self.seed == seed and self.per_template_min == per_template_min and self.disjoint
                and bool(self.prompts))

    def info(self) -> dict[str, Any]:
        """``settings.mean_pool`` in results.json."""
        return {"n": self.n, "per_template_min": self.per_template_min, "per_mean": self.per_template_min,
                "smallest_mean": min(self.counts.values()) if self.counts else 0,
                "seed": self.seed, "grouping": "layout", "key": "layout", "n_means": len(self.counts),
                "counts": {_label(k): v for k, v in sorted(self.counts.items())},
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


def _finish(sums: dict[Layout, tuple[list[Any], list[Any]]], counts: dict[Layout, int], dtype: Any
            ) -> dict[Layout, tuple[list[torch.Tensor], list[torch.Tensor]]]:
    return {k: ([z.div(counts[k]).to(dtype) for z in zs], [m.div(counts[k]).to(dtype) for m in ms])
            for k, (zs, ms) in sums.items()}


def build_mean_pool(model: LoadedModel, scored: Dataset, *, generate: bool, seed: int,
                    per_template_min: int = DEFAULT_PER_MEAN, max_tokens: int | None = None,
                    work: Work | None = None, start_from: MeanPool | None = None) -> MeanPool:
    """The pool for ``scored``: one mean per token layout the scored prompts have.

    ``generate``: draw fresh ABC prompts from the IOI generator with ``seed`` (the first
    ``per_template_min`` of each needed layout, in generation order, so the means depend
    neither on how many prompts are scored nor on which; a pool prompt equal to a scored
    prompt is a :class:`TaskError`); otherwise average the scored prompts' own corrupted
    partners by layout (in-sample, recorded as not disjoint).

    ``start_from``: a generated pool of the same ``seed`` and ``per_template_min`` (another
    run's, e.g. the robustness panel's regenerated prompts start from the run's own): its
    means are taken for the layouts it has, and only the others are run through the model.
    The result equals a pool built from nothing, since a layout's mean depends only on the
    seed and ``per_template_min``.
    """
    weight = next(model.bridge.parameters())
    dtype = weight.dtype
    if max_tokens is None:  # 8192 on the CPU, sized from the free memory on CUDA
        max_tokens = pass_size(weight.device, 8192, d_model=model.info.d_model, n_layers=model.info.n_layers)
    keys = sorted({layout_key(scored, i) for i in range(len(scored))})
    taken: dict[Layout, list[tuple[int, ...]]] = {k: [] for k in keys}
    if not generate:
        for i, toks in enumerate(scored.corrupt):
            taken[layout_key(scored, i)].append(toks)
        sums = {k: _capture_sums(model, rows, max_tokens, work) for k, rows in taken.items()}
        counts = {k: len(v) for k, v in taken.items()}
        return MeanPool(_finish(sums, counts, dtype), counts, per_template_min, None,
                        "in-sample: the scored prompts' own corrupted partners, per token layout "
                        "(this task has no generator to draw a separate pool from)", disjoint=False)
    base = start_from if start_from is not None and start_from.extends_to(seed, per_template_min) else None
    reused = [k for k in keys if base is not None and k in base.means]
    taken = _draw_pool(model, scored, [k for k in keys if k not in reused], seed, per_template_min)
    if base is not None:
        taken.update({k: list(base.prompts[k]) for k in reused})
    scored_set = set(scored.corrupt) | set(scored.clean)
    shared = sum(toks in scored_set for rows in taken.values() for toks in rows)
    if shared:
        raise TaskError(f"{shared} mean-pool prompt(s) (seed {seed}) equal a scored prompt, so the "
                        "means would not be held out; give another --mean-pool-seed")
    counts = {k: len(v) for k, v in taken.items()}
    means = _finish({k: _capture_sums(model, rows, max_tokens, work) for k, rows in taken.items()
                     if k not in reused}, counts, dtype)
    if base is not None:
        means.update({k: base.means[k] for k in reused})
    return MeanPool(dict(sorted(means.items())), dict(sorted(counts.items())), per_template_min, seed,
                    f"ABC prompts from the IOI generator (seed {seed}), none equal to a scored prompt; "
                    "one per-position mean per token layout (length and named positions), over the "
                    f"first {per_template_min} prompts of that layout",
                    prompts={k: tuple(v) for k, v in sorted(taken.items())})


def _draw_pool(model: LoadedModel, scored: Dataset, keys: list[Layout], seed: int,
               per_template_min: int) -> dict[Layout, list[tuple[int, ...]]]:
    """The first ``per_template_min`` generated ABC prompts (``seed``) of each layout in ``keys``."""
    if not keys:
        return {}
    n = per_template_min * 4 * len(keys)
    while True:
        pool = build_ioi(model.tokenizer, n_prompts=n, seed=seed, corruption="abc",
                         prepend_bos=scored.prepend_bos)
        taken: dict[Layout, list[tuple[int, ...]]] = {k: [] for k in keys}
        for i, toks in enumerate(pool.corrupt):
            rows = taken.get(layout_key(pool, i))
            if rows is not None and len(rows) < per_template_min:
                rows.append(toks)
        if all(len(v) >= per_template_min for v in taken.values()) or n >= 400 * per_template_min:
            break
        n *= 2
    missing = [_label(k) for k, v in taken.items() if not v]
    if missing:
        raise ValueError(f"the IOI generator made no prompt of layout {missing} for the mean pool")
    return taken
