"""The run context of one ``verify``: what every stage of the run reads, resolved once.

:class:`RunContext` holds the hypothesis, the loaded model and dataset, the run's
:class:`~circuitspec.verification.settings.RunSettings`, the engine and its clean and
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
from circuitspec.patching.engine import PatchEngine, select_engine
from circuitspec.patching.types import Receiver, Sender
from circuitspec.scoring.effects import effect_ci, effect_of
from circuitspec.verification.settings import RunSettings, bootstrap_clusters

if TYPE_CHECKING:
    from circuitspec.bridge.loading import LoadedModel
    from circuitspec.data.dataset import Dataset
    from circuitspec.spec.schema import Hypothesis

__all__ = ["RunContext", "run_work"]


def run_work(model: LoadedModel, dataset: Dataset) -> Work:
    """A work counter whose unit is one full forward over ``dataset``'s clean prompts."""
    return Work(per_forward=sum(len(t) for t in dataset.clean) * model.info.n_layers)


class RunContext:
    """The loaded model, dataset, settings (resolved before, :func:`~.settings.resolve`) and
    engine for one hypothesis run."""

    def __init__(self, hyp: Hypothesis, model: LoadedModel, dataset: Dataset, settings: RunSettings,
                 mean_pool: MeanPool | None = None):
        self.hyp = hyp
        self.model = model
        self.dataset = dataset
        self.settings = settings
        self.circuit = hyp.circuit()
        # The statistics every stage shares, named short: they appear in every interval's call.
        self.seed, self.level, self.n_boot = settings.seed, settings.level, settings.n_bootstrap
        self.clusters, self.bootstrap_unit = bootstrap_clusters(dataset, settings.bootstrap, hyp.task.kind)
        self._mean_pool: MeanPool | None = None
        self._pool_start = mean_pool  # another run's pool: its means are reused where they apply
        self._runners: dict[str, AblationRunner] = {}
        self.work = run_work(model, dataset)
        with self.work.at("caches"):
            self.engine: PatchEngine = select_engine(model, dataset, settings.engine, self.work)
        clean, corrupt = self.engine.baselines()
        self.clean = clean.double().numpy()
        self.corrupt = corrupt.double().numpy()

    # -- ablation caches, built on first use and shared by every claim -------------------
    def mean_pool(self) -> MeanPool:
        """The separate pool mean ablation takes its means from, built on first use."""
        if self._mean_pool is None:
            s = self.settings
            seed = s.mean_pool_seed if s.mean_pool_seed is not None else pool_seed(s.seed)
            with self.work.at("mean_pool"):
                self._mean_pool = build_mean_pool(
                    self.model, self.dataset, generate=self.hyp.task.kind == "ioi", seed=seed,
                    per_template_min=s.mean_pool_min or DEFAULT_PER_MEAN, work=self.work,
                    start_from=self._pool_start)
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
        rows = self.engine.sweep(receiver, list(senders), semantics=semantics or self.settings.semantics,  # type: ignore[arg-type]
                                 freeze_mlps=self.settings.freeze_mlps)
        return rows.double().numpy()

    def patched(self, sender: Sender, receiver: Receiver, semantics: str | None = None) -> np.ndarray:
        return self.sweep([sender], receiver, semantics)[0]

    def effect_with_ci(self, patched: np.ndarray) -> tuple[float, tuple[float, float]]:
        value = effect_of(patched, self.clean, self.corrupt)
        ci = effect_ci(patched, self.clean, self.corrupt, n=self.n_boot, seed=self.seed, level=self.level,
                       clusters=self.clusters)
        return value, ci
