"""The run context of one ``verify``: what every stage of the run reads, resolved once.

:class:`RunContext` holds the hypothesis, the loaded model and dataset, the settings as
they apply to this run (the options over the file's values), the engine and its clean and
corrupted baselines, and the caches the claims share (the mean-ablation pool and one
ablation runner per kind). The stages read it and return their results; none writes
results into it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from circuitspec.ablation.mean_pool import DEFAULT_PER_MEAN, MeanPool, build_mean_pool, pool_seed
from circuitspec.ablation.node import AblationRunner
from circuitspec.bridge.work import Work
from circuitspec.errors import CircuitSpecError
from circuitspec.patching.engine import PatchEngine, select_engine
from circuitspec.patching.types import Receiver, Sender
from circuitspec.scoring.effects import effect_ci, effect_of
from circuitspec.verification.settings import Options, bootstrap_clusters

if TYPE_CHECKING:
    from circuitspec.bridge.loading import LoadedModel
    from circuitspec.data.dataset import Dataset
    from circuitspec.spec.schema import Hypothesis

__all__ = ["RunContext", "run_work"]


def run_work(model: LoadedModel, dataset: Dataset) -> Work:
    """A work counter whose unit is one full forward over ``dataset``'s clean prompts."""
    return Work(per_forward=sum(len(t) for t in dataset.clean) * model.info.n_layers)


class RunContext:
    """The loaded model, dataset, resolved settings and engine for one hypothesis run."""

    def __init__(self, hyp: Hypothesis, model: LoadedModel, dataset: Dataset, options: Options):
        self.hyp = hyp
        self.model = model
        self.dataset = dataset
        self.opts = options
        self.circuit = hyp.circuit()
        self.semantics = options.semantics or hyp.semantics
        self.ablation = options.ablation or hyp.ablation
        self.ablation_level = options.ablation_level or hyp.judged_level()
        if self.ablation_level not in ("node", "edge"):
            raise CircuitSpecError(f"ablation level {self.ablation_level!r}: choose node or edge")
        self.freeze_mlps = hyp.freeze_mlps if options.freeze_mlps is None else options.freeze_mlps
        self.n_boot = options.n_bootstrap or hyp.claims.n_bootstrap
        self.level = hyp.claims.confidence
        self.seed = options.seed if options.seed is not None else (hyp.task.seed or 0)
        self.clusters, self.bootstrap_unit = bootstrap_clusters(dataset, options.bootstrap, hyp.task.kind)
        self._mean_pool: MeanPool | None = None
        self._runners: dict[str, AblationRunner] = {}
        self.work = run_work(model, dataset)
        with self.work.at("caches"):
            self.engine: PatchEngine = select_engine(model, dataset, options.engine, self.work)
        clean, corrupt = self.engine.baselines()
        self.clean = clean.double().numpy()
        self.corrupt = corrupt.double().numpy()

    # -- ablation caches, built on first use and shared by every claim -------------------
    def mean_pool(self) -> MeanPool:
        """The separate pool mean ablation takes its means from, built on first use."""
        if self._mean_pool is None:
            seed = self.opts.mean_pool_seed if self.opts.mean_pool_seed is not None else pool_seed(self.seed)
            with self.work.at("mean_pool"):
                self._mean_pool = build_mean_pool(
                    self.model, self.dataset, generate=self.hyp.task.kind == "ioi", seed=seed,
                    per_template_min=self.opts.mean_pool_min or DEFAULT_PER_MEAN, work=self.work)
        return self._mean_pool

    @property
    def built_mean_pool(self) -> MeanPool | None:
        """The mean pool if this run built one (None when no claim needed it)."""
        return self._mean_pool

    def runner(self, kind: str) -> AblationRunner:
        """The node-ablation runner for ``kind``, built once (its caches serve both levels)."""
        if kind not in self._runners:
            pool = self.mean_pool() if kind == "mean" else None
            with self.work.at("ablation_caches"):
                self._runners[kind] = AblationRunner(self.model, self.dataset, kind, work=self.work,  # type: ignore[arg-type]
                                                     mean_pool=pool)
        return self._runners[kind]

    # -- patching ------------------------------------------------------------------------
    def sweep(self, senders: list[Sender], receiver: Receiver, semantics: str | None = None) -> np.ndarray:
        """[n_senders, N] patched metric, each sender alone into ``receiver``."""
        rows = self.engine.sweep(receiver, list(senders), semantics=semantics or self.semantics,  # type: ignore[arg-type]
                                 freeze_mlps=self.freeze_mlps)
        return rows.double().numpy()

    def patched(self, sender: Sender, receiver: Receiver, semantics: str | None = None) -> np.ndarray:
        return self.sweep([sender], receiver, semantics)[0]

    def effect_with_ci(self, patched: np.ndarray) -> tuple[float, tuple[float, float]]:
        value = effect_of(patched, self.clean, self.corrupt)
        ci = effect_ci(patched, self.clean, self.corrupt, n=self.n_boot, seed=self.seed, level=self.level,
                       clusters=self.clusters)
        return value, ci
