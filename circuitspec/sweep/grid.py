"""Cells: the grid of a sweep expanded into single verify runs, each with a content key.

A cell is one hypothesis on one model with one setting per axis. Its *key* is
the sha256 of everything its result depends on: the hypothesis file's bytes (and
its prompts file's), the model reference and revision (and, for a local
checkpoint folder, the names, sizes and modification times of its files, so a
re-saved checkpoint runs again), every setting, and the circuitspec version. A
finished cell whose recorded key matches is not run again; anything else is.

The cell id is readable and unique: hypothesis, model label, the axes' values,
and the key's first eight hex digits, e.g. ``ioi-smollm2__step1000__seed1__3fa2b1c9``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from circuitspec import __version__
from circuitspec.bridge.loading import PACKAGED
from circuitspec.spec.schema import Hypothesis, ModelSpec
from circuitspec.sweep.spec import LoadedSweep, ModelRef
from circuitspec.verification.settings import Options

__all__ = ["AXES", "Cell", "ModelKey", "expand", "resolve_model"]

AXES = ("seed", "n_prompts", "semantics", "ablation", "ablation_level", "device")
"""The setting axes, in column order (``hypothesis`` and ``model`` come first)."""


@dataclass(frozen=True)
class ModelKey:
    """What a worker loads: cells with the same key share one loaded model."""

    ref: str
    revision: str | None
    device: str
    dtype: str
    device_map: str | None = None
    """The hypothesis' model.device_map as JSON text (hashable), if any."""
    n_devices: int | None = None

    def load_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`circuitspec.bridge.loading.load_model`."""
        return {"revision": self.revision, "device": self.device, "dtype": self.dtype,
                "device_map": None if self.device_map is None else json.loads(self.device_map),
                "n_devices": self.n_devices}

    @property
    def label(self) -> str:
        return f"{self.ref}@{self.revision}" if self.revision else self.ref


@dataclass(frozen=True)
class Cell:
    """One verify run of a sweep."""

    id: str
    """Readable, unique folder name under ``DIR/cells/``."""
    key: str
    """sha256 of the inputs (see the module docstring)."""
    hypothesis_name: str
    hypothesis_path: str
    model: ModelKey
    model_label: str
    """Short model name for tables and pictures."""
    axes: dict[str, Any] = field(default_factory=dict)
    """Effective value of every setting axis (the grid's, else the hypothesis')."""
    verify: dict[str, Any] = field(default_factory=dict)
    """The sweep's verify settings, shared by every cell."""
    inputs: dict[str, Any] = field(default_factory=dict)
    """What the key hashes, written beside the result as ``cell.json``."""

    def options(self) -> Options:
        """The verify options of this cell."""
        a = self.axes
        return Options(n_prompts=a["n_prompts"], seed=a["seed"], device=a["device"],
                       semantics=a["semantics"], ablation=a["ablation"],
                       ablation_level=a["ablation_level"], **self.verify)

    def hypothesis(self, hyp: Hypothesis) -> Hypothesis:
        """``hyp`` pointed at this cell's model."""
        m = self.model
        kw = m.load_kwargs()
        spec = ModelSpec(name=m.ref, revision=m.revision, dtype=m.dtype, device=m.device,  # type: ignore[arg-type]
                         device_map=kw["device_map"], n_devices=m.n_devices)
        return hyp.model_copy(update={"model": spec})

    def row_axes(self) -> dict[str, Any]:
        """hypothesis, model, revision, then each setting axis: the columns a row starts with."""
        return {"hypothesis": self.hypothesis_name, "model": self.model_label,
                "revision": self.model.revision, **self.axes}


def _sha_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_model(entry: str | ModelRef, *folders: Path) -> tuple[str, str | None, str]:
    """(reference, revision, label) of a ``model`` axis entry; a local path is made absolute,
    relative to the first of ``folders`` where it exists (else the first)."""
    name, revision, label = (entry, None, None) if isinstance(entry, str) else (
        entry.name, entry.revision, entry.label)
    places = [f / Path(name).expanduser() for f in folders]
    local = next((p for p in places if p.is_dir()), places[0])
    if name not in PACKAGED and (local.is_dir() or name.startswith((".", "/", "~"))):
        name = str(local.resolve())
        return name, None, label or Path(name).name
    if revision is None and "@" in name:  # hub id@revision
        name, revision = name.split("@", 1)
    return name, revision, label or (f"{name}@{revision}" if revision else name)


def _model_fingerprint(ref: str, revision: str | None) -> Any:
    if ref in PACKAGED:
        return {"packaged_sha256": PACKAGED[ref].sha256}
    path = Path(ref)
    if path.is_dir():
        return sorted((str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns)
                      for p in path.rglob("*") if p.is_file())
    return {"hub_revision": revision}  # None: the hub's default branch, which can move


def _hypothesis_fingerprint(path: Path, hyp: Hypothesis) -> dict[str, Any]:
    out = {"sha256": _sha_file(path)}
    if hyp.task.file is not None and Path(hyp.task.file).is_file():
        out["prompts_sha256"] = _sha_file(Path(hyp.task.file))
    return out


def _slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:limit] or "x"


def expand(loaded: LoadedSweep) -> list[Cell]:
    """Every cell of the sweep, hypotheses outermost, then the grid in file order."""
    spec, grid = loaded.spec, loaded.spec.grid
    verify = spec.verify.model_dump()
    cells: list[Cell] = []
    fingerprints: dict[tuple[str, str | None], Any] = {}
    for path, hyp in loaded.hypotheses:
        base = hyp.model_spec
        # Grid models are relative to the sweep file (or the working folder); the hypothesis'
        # own model, as `circuitspec verify` reads it, to the working folder.
        models = ([resolve_model(m, loaded.folder, Path.cwd()) for m in grid.model] if grid.model is not None
                  else [resolve_model(ModelRef(name=base.name, revision=base.revision), Path.cwd(), path.parent)])
        values: dict[str, list[Any]] = {
            "seed": grid.seed or [hyp.task.seed],
            "n_prompts": grid.n_prompts or [hyp.task.n_prompts],
            "semantics": grid.semantics or [hyp.semantics],
            "ablation": grid.ablation or [hyp.ablation],
            "ablation_level": grid.ablation_level or [hyp.ablation_level],
            "device": grid.device or [base.device],
        }
        hyp_print = _hypothesis_fingerprint(path, hyp)
        for (ref, revision, label), combo in itertools.product(models, itertools.product(*values.values())):
            axes = dict(zip(AXES, combo, strict=True))
            model = ModelKey(ref, revision, axes["device"], base.dtype,
                             None if base.device_map is None else json.dumps(base.device_map, sort_keys=True),
                             base.n_devices)
            if (ref, revision) not in fingerprints:
                fingerprints[(ref, revision)] = _model_fingerprint(ref, revision)
            inputs = {"hypothesis": {"name": hyp.name, **hyp_print}, "model": asdict(model),
                      "model_files": fingerprints[(ref, revision)], "axes": axes, "verify": verify,
                      "circuitspec": __version__}
            key = hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()
            varied = [f"{k}{v}" for k, v in axes.items() if len(values[k]) > 1]
            parts = [_slug(hyp.name), _slug(label), *(_slug(v, 20) for v in varied), key[:8]]
            cells.append(Cell("__".join(parts), key, hyp.name, str(path), model, label, axes,
                              verify, inputs))
    return cells
