"""Node ablation: run the clean prompts with every head outside a circuit knocked out.

A *keep-set* names the attention heads (and optionally MLP layers) that run normally;
every other head has its output replaced at ``hook_z`` (the per-query-head attention
output before ``W_O``), at every position, by

- ``mean``: the head's z averaged per position over a separate pool of corrupted (ABC)
  prompts (``mean_pool``, see :mod:`circuitspec.ablation.mean_pool`; what ``verify`` uses), or,
  without a pool, over the corrupted prompts of the same template in the dataset
  (Wang et al. 2022, section 4; the corrupted set is the ABC distribution): an in-sample
  mean over the scored prompts' own partners, which a caller asks for with
  ``in_sample=True`` (without it, a warning);
- ``resample``: the head's z on the paired corrupted prompt (as ACDC does);
- ``zero``: zero.

The ablation type is applied in :mod:`circuitspec.ablation.replacement`. Optionally a
circuit head runs normally only at named positions (``circuit_positions``)
and is ablated everywhere else, as the paper does. MLPs run normally unless
``mlp_keep`` names the layers to keep; ablated MLPs get the same treatment at
``hook_mlp_out``.

:class:`AblationRunner` caches the corrupted activations and template means once and
evaluates many keep-sets by stacking the same prompts several times in one batch, each
copy with its own mask. Only the answer logits at ``END`` are computed (the unembedding
sees one position per row). The metric is the per-prompt logit difference
logit(correct) - logit(incorrect) at ``END``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from circuitspec.ablation.groups import Group as _Group
from circuitspec.ablation.groups import prepare_groups
from circuitspec.ablation.keep import Keep
from circuitspec.ablation.prefix_tree import forward_tree, replacement_rows, signature
from circuitspec.ablation.replacement import ABLATIONS, AblationKind
from circuitspec.bridge.device import pass_size
from circuitspec.bridge.hooks import (
    UNEMBED_IN,
    capture_into,
    keep_or_replace,
    mlp_out_hook,
    resid_pre_hook,
    take_rows,
    z_hook,
)
from circuitspec.bridge.resume import can_resume, resumed_at
from circuitspec.errors import InvalidArgument
from circuitspec.patching.types import answer_diff
from circuitspec.spec.heads import Head

if TYPE_CHECKING:
    import torch
    from jaxtyping import Float

    from circuitspec.ablation.mean_pool import MeanPool
    from circuitspec.bridge.loading import LoadedModel
    from circuitspec.bridge.work import Work
    from circuitspec.data.dataset import Dataset

__all__ = ["ABLATIONS", "IN_SAMPLE_MEAN", "MAX_REFERENCES", "AblationKind", "AblationRunner", "Head", "Keep",
           "per_prompt_logit_diff"]

IN_SAMPLE_MEAN = ("mean ablation without a mean_pool takes each template's mean over the scored prompts' own "
                  "corrupted partners (an in-sample mean, not what verify uses); pass "
                  "mean_pool=build_mean_pool(model, dataset, generate=True, seed=pool_seed(seed)) as verify does, "
                  "or in_sample=True where the in-sample mean is meant")

MAX_REFERENCES = 2  # registered runs cached besides the clean and fully ablated ones
CPU_TOKENS = 4096  # tokens of one pass on the CPU (measured on the 2-core machine)



class AblationRunner:
    """Evaluate many keep-sets on one dataset, sharing cached corrupted activations.

    ``max_tokens`` bounds the tokens of one forward pass (rows x positions); lower it
    when memory is tight. By default 4096 on the CPU, sized from the free memory on CUDA. ``direct=False`` runs resumed
    segments through the bridge's own forward instead of :class:`RowModel` (for tests).
    ``in_sample=True``: mean ablation without a ``mean_pool`` is meant (the scored prompts'
    own corrupted partners make the means); without it such a runner warns.
    """
    def __init__(
        self,
        model: LoadedModel,
        dataset: Dataset,
        ablation: AblationKind = "mean",
        *,
        max_tokens: int | None = None,
        resume: bool = True,
        work: Work | None = None,
        mean_pool: MeanPool | None = None,
        direct: bool = True,
        in_sample: bool = False,
    ) -> None:
        if ablation not in ABLATIONS:
            raise InvalidArgument(f"unknown ablation {ablation!r}; use one of {', '.join(ABLATIONS)}")
        if ablation == "mean" and mean_pool is None and not in_sample:
            warnings.warn(IN_SAMPLE_MEAN, stacklevel=2)
        self.bridge = model.bridge
        self.dataset = dataset
        self.ablation = ablation
        cfg = self.bridge.cfg
        self.max_tokens = max_tokens if max_tokens is not None else pass_size(
            self._device(), CPU_TOKENS, d_model=int(cfg.d_model), n_layers=int(cfg.n_layers))
        # With a pool, mean ablation takes its means from it (mean_pool.py), not from the
        # scored prompts' own corrupted partners.
        self.mean_pool = mean_pool if ablation == "mean" else None
        self.n_layers, self.n_heads = int(cfg.n_layers), int(cfg.n_heads)
        self.all_heads = frozenset((L, h) for L in range(self.n_layers) for h in range(self.n_heads))
        self.n_forward = 0  # forward passes run, for benchmarks
        self.work = work  # token-layers recomputed, counted per pass
        # A keep-set that ablates every head below layer k, or none, matches the fully
        # ablated or the clean run there: it resumes from that run's residual at k.
        self.resume = resume and can_resume(self.bridge)
        # Resumed segments run the blocks directly (bridge/rows.py) where the architecture is
        # one RowModel reproduces: no hooks, and about 1.5x faster than the bridge's forward.
        from circuitspec.bridge.rows import RowModel, unsupported_reason

        self.rows = (RowModel(self.bridge, model.info.n_heads, model.info.n_kv_heads)
                     if self.resume and direct and unsupported_reason(self.bridge) is None else None)
        self._refs: dict[tuple[int, int, int, str], list[torch.Tensor]] = {}
        # Runs whose residuals are cached so that other keep-sets resume from them: the clean
        # and fully ablated runs, and any keep-set registered with add_reference (a circuit C,
        # whose C \\ K agree with it below K's first layer).
        self._ref_keeps: dict[str, Keep] = {"clean": Keep(), "ablated": Keep(frozenset())}
        self._ref_sigs: dict[str, list[Any]] = {}
        self._memo: dict[Keep, torch.Tensor] = {}
        self._n_refs = 0
        self._groups = prepare_groups(self)
        self._clean = self.run([Keep()])[0]

    # ----------------------------------------------------------------- setup
    def _device(self) -> Any:
        import torch

        try:
            return next(self.bridge.parameters()).device
        except StopIteration:
            return torch.device("cpu")


    # ------------------------------------------------------------- evaluation
    @property
    def n_keep_sets(self) -> int:
        """Distinct keep-sets evaluated so far (the clean run included)."""
        return len(self._memo)

    @property
    def clean(self) -> Float[torch.Tensor, " prompt"]:
        """Per-prompt logit difference of the unablated model, F(M)."""
        return self._clean

    def z_replacement(self, prompt: int, layer: int) -> Float[torch.Tensor, "pos head d_head"]:
        """What an ablated head's z becomes on ``prompt`` at ``layer`` (for inspection)."""
        for group in self._groups:
            hit = (group.index == prompt).nonzero()
            if len(hit):
                repl = group.z_repl[layer]
                if repl.dim() == 0:
                    d_head = int(self.bridge.cfg.d_head)
                    return repl.new_zeros((group.tokens.shape[1], self.n_heads, d_head))
                return repl[int(hit[0, 0])]
        raise IndexError(f"prompt {prompt} is not in the dataset ({len(self.dataset)} prompts)")

    def logit_diff(
        self,
        keep: Iterable[Head] | None = None,
        *,
        mlp_keep: Iterable[int] | None = None,
        circuit_positions: Mapping[Head, Sequence[str]] | None = None,
    ) -> Float[torch.Tensor, " prompt"]:
        """Per-prompt logit difference with every head outside ``keep`` ablated."""
        return self.run([Keep.of(keep, mlp_keep, circuit_positions)])[0]

    def run(self, keeps: Sequence[Keep | Iterable[Head] | None]) -> Float[torch.Tensor, "keep prompt"]:
        """Per-prompt logit differences for many keep-sets, batched; ``[len(keeps), N]``."""
        import torch

        specs = [k if isinstance(k, Keep) else Keep.of(k) for k in keeps]
        todo = list(dict.fromkeys(k for k in specs if self._key(k) not in self._memo))
        if todo:
            for k, values in zip(todo, self._evaluate([self._key(k) for k in todo]), strict=True):
                self._memo[self._key(k)] = values
        if not specs:
            return torch.zeros((0, len(self.dataset)), device="cpu")
        return torch.stack([self._memo[self._key(k)] for k in specs])

    def _key(self, keep: Keep) -> Keep:
        """A canonical form, so that keep-sets that ablate nothing share the clean run."""
        heads = None if keep.heads is None or keep.heads >= self.all_heads else keep.heads
        unknown = (keep.heads or frozenset()) - self.all_heads
        if unknown:
            raise ValueError(
                f"heads {sorted(unknown)} do not exist: the model has layers 0-{self.n_layers - 1} "
                f"and heads 0-{self.n_heads - 1}"
            )
        mlps = None if keep.mlps is None or keep.mlps >= set(range(self.n_layers)) else keep.mlps
        kept = self.all_heads if heads is None else heads
        positions = tuple((h, p) for h, p in keep.positions if h in kept)
        for _, names in positions:
            for name in names:
                if name not in self.dataset.positions:
                    raise ValueError(
                        f"unknown position {name!r}; the dataset has {', '.join(self.dataset.positions)}"
                    )
        return Keep(heads, mlps, positions)

    def _masks(self, group: _Group, keep: Keep) -> tuple[torch.Tensor | None, list[bool]]:
        """[layers, n, pos, heads] True where the head runs normally (None: all); MLP kept flags."""
        import torch

        mlp_kept = [keep.mlps is None or L in keep.mlps for L in range(self.n_layers)]
        if keep.heads is None and not keep.positions:
            return None, mlp_kept
        n, length = group.tokens.shape
        mask = torch.zeros((self.n_layers, n, length, self.n_heads), dtype=torch.bool,
                           device=group.tokens.device)
        heads = self.all_heads if keep.heads is None else keep.heads
        for L, h in heads:
            mask[L, :, :, h] = True
        for (L, h), names in keep.positions:
            where = torch.zeros((n, length), dtype=torch.bool, device=mask.device)
            for name in names:
                where |= group.pos_masks[name]
            mask[L, :, :, h] = where
        return mask, mlp_kept

    def _evaluate(self, keeps: Sequence[Keep]) -> list[torch.Tensor]:
        import torch

        out = torch.zeros((len(keeps), len(self.dataset)), device="cpu")  # results leave the device here
        for group in self._groups:
            n, length = group.tokens.shape
            rows = max(1, self.max_tokens // length)
            step = min(n, rows)
            masks = [self._masks(group, k) for k in keeps]  # built once per group, not per pass
            sigs = [signature(self, k) for k in keeps] if self.resume else []
            starts: dict[tuple[int, str], list[int]] = {}
            for i, k in enumerate(keeps):
                starts.setdefault(self._start(group, k, masks[i], sigs[i] if sigs else None), []).append(i)
            for s in range(0, n, step):
                sl = slice(s, min(n, s + step))
                per_pass = max(1, rows // (sl.stop - s))
                for (start, which), members in starts.items():
                    if self.resume:  # neighbours in the tree share the most layers
                        members = sorted(members, key=lambda i: sigs[i])
                    for k0 in range(0, len(members), per_pass):
                        chunk = members[k0 : k0 + per_pass]
                        if self.resume:
                            values = forward_tree(self, group, sl, [sigs[i] for i in chunk],
                                                        [masks[i] for i in chunk], start, which)
                        else:
                            values = self._forward(group, sl, [keeps[i] for i in chunk], start, which)
                        out[torch.tensor(chunk, device="cpu")[:, None], group.index[sl]] = values.cpu()
        return list(out)

    def add_reference(self, keep: Keep) -> None:
        """Cache ``keep``'s run (the residual entering every layer, built on first use) and
        resume every later keep-set that agrees with it up to some layer from there. Register a
        circuit C before evaluating many C \\ K: each then runs only from K's first layer.
        At most :data:`MAX_REFERENCES` are held besides the clean and fully ablated runs; the
        oldest is dropped (with its cached residuals) to make room."""
        if not self.resume:
            return
        key = self._key(keep)
        if key in self._ref_keeps.values():
            return
        extra = [name for name in self._ref_keeps if name not in ("clean", "ablated")]
        if len(extra) >= MAX_REFERENCES:
            self._drop_reference(extra[0])
        name = f"ref{self._n_refs}"
        self._n_refs += 1
        self._ref_keeps[name] = key

    def _drop_reference(self, name: str) -> None:
        del self._ref_keeps[name]
        self._ref_sigs.pop(name, None)
        for k in [k for k in self._refs if k[3] == name]:
            del self._refs[k]

    def _start(self, group: _Group, keep: Keep, masks: Any = None, sig: Any = None,
               among: Sequence[str] | None = None) -> tuple[int, str]:
        """The layer this keep-set's pass can resume at, and from which cached run (of ``among``,
        default all): the one that agrees with it on the most layers (see :meth:`add_reference`)."""
        mask, mlp_kept = self._masks(group, keep) if masks is None else masks
        if not self.resume or (mask is None and all(mlp_kept)):
            return 0, "clean"
        sig = signature(self, keep) if sig is None else sig
        best, which = 0, "clean"
        for name, ref in self._ref_keeps.items():
            if among is not None and name not in among:
                continue
            if name not in self._ref_sigs:
                self._ref_sigs[name] = signature(self, ref)
            theirs = self._ref_sigs[name]
            first = next((L for L in range(self.n_layers) if sig[L] != theirs[L]), self.n_layers)
            if first > best:
                best, which = first, name
        return min(best, self.n_layers - 1), which

    def _reference(self, group: _Group, sl: slice, which: str) -> list[torch.Tensor]:
        """The residual entering every layer in the clean or the fully ablated run of ``group[sl]``."""
        key = (int(group.index[0]), sl.start, sl.stop, which)
        if key not in self._refs:
            store: dict[int, torch.Tensor] = {}
            zs: dict[int, torch.Tensor] = {}
            keep = self._ref_keeps[which]
            start, base = (0, "clean") if which in ("clean", "ablated") else self._start(
                group, keep, among=("clean", "ablated"))
            self._forward(group, sl, [keep], start, base, capture=store,
                          capture_z=zs if which == "ablated" else None)
            below = self._reference(group, sl, base)[:start] if start else []
            self._refs[key] = below + [store[L] for L in range(start, self.n_layers)]
            if zs:
                self._refs[(*key[:3], "ablated z")] = [zs[L] for L in range(self.n_layers)]
        return self._refs[key]

    def ablated_z(self, group: _Group, sl: slice) -> list[torch.Tensor]:
        """Every head's z (before it is replaced) in the fully ablated run of ``group[sl]``, per
        layer: what a head computes when everything upstream of it arrives ablated."""
        self._reference(group, sl, "ablated")
        return self._refs[(int(group.index[0]), sl.start, sl.stop, "ablated z")]

    def _forward(self, group: _Group, sl: slice, keeps: Sequence[Keep], start: int = 0,
                 which: str = "clean", capture: dict[int, torch.Tensor] | None = None,
                 capture_z: dict[int, torch.Tensor] | None = None) -> torch.Tensor:
        """One batched pass: the prompts ``group[sl]`` stacked once per keep-set, from layer ``start``."""
        import torch


        tokens = group.tokens[sl]
        n, n_k = tokens.shape[0], len(keeps)
        masks = [self._masks(group, k) for k in keeps]
        everything = torch.ones((n, tokens.shape[1], self.n_heads), dtype=torch.bool,
                                device=tokens.device)
        hooks: list[tuple[str, Any]] = []
        if capture is not None:
            hooks += [(resid_pre_hook(L), capture_into(capture, L)) for L in range(self.n_layers)]
        if capture_z is not None:  # before the replacing hooks: the z each head computed
            hooks += [(z_hook(L), capture_into(capture_z, L)) for L in range(self.n_layers)]
        for layer in range(start, self.n_layers):
            head_masks = [m[layer, sl] if m is not None else everything for m, _ in masks]
            if not all(bool(hm.all()) for hm in head_masks):
                stacked = torch.stack(head_masks)[..., None]  # [k, n, pos, heads, 1]
                hooks.append((z_hook(layer), keep_or_replace(stacked, replacement_rows(group.z_repl[layer], sl))))
            mlp_flags = [kept[layer] for _, kept in masks]
            if not all(mlp_flags):
                keep_mlp = torch.tensor(mlp_flags, device=tokens.device)[:, None, None, None]
                hooks.append((mlp_out_hook(layer), keep_or_replace(keep_mlp, replacement_rows(group.mlp_repl[layer], sl))))
        end = group.end[sl].repeat(n_k)
        hooks.append((UNEMBED_IN, take_rows(end)))
        with torch.no_grad():
            if start:
                resid = self._reference(group, sl, which)[start]
                with resumed_at(self.bridge, start):
                    logits = self.bridge.run_with_hooks(resid.repeat(n_k, 1, 1), fwd_hooks=hooks,  # type: ignore[arg-type]
                                                        start_at_layer=start)
            else:
                logits = self.bridge.run_with_hooks(tokens.repeat(n_k, 1), fwd_hooks=hooks)  # type: ignore[arg-type]
        self.n_forward += 1
        if self.work is not None:
            self.work.add(n * n_k, tokens.shape[1], self.n_layers - start)
        logits = logits[:, 0] if logits.shape[1] == 1 else logits[torch.arange(len(end), device=end.device), end]
        diff = answer_diff(logits, group.correct[sl].repeat(n_k), group.incorrect[sl].repeat(n_k))
        return diff.reshape(n_k, n).float()


def per_prompt_logit_diff(
    model: LoadedModel,
    dataset: Dataset,
    *,
    keep: Iterable[Head] | None = None,
    ablation: AblationKind = "mean",
    mlp_keep: Iterable[int] | None = None,
    circuit_positions: Mapping[Head, Sequence[str]] | None = None,
    mean_pool: MeanPool | None = None,
    in_sample: bool = False,
) -> Float[torch.Tensor, " prompt"]:
    """Logit difference per prompt with every head outside ``keep`` ablated (None: keep all).

    One-off convenience; use :class:`AblationRunner` to evaluate many keep-sets
    (``mean_pool``, ``in_sample``: as there).
    """
    runner = AblationRunner(model, dataset, ablation, mean_pool=mean_pool, in_sample=in_sample)
    return runner.logit_diff(keep, mlp_keep=mlp_keep, circuit_positions=circuit_positions)
