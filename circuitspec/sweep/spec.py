"""The sweep file: which hypotheses to verify, over which grid of models and settings.

A sweep file names one or more hypothesis files and the axes to vary; every
combination of the axes' values is one *cell*, a single ``circuitspec verify``
run (see :mod:`circuitspec.sweep.grid`)::

    name: ioi-over-checkpoints
    hypotheses: [hypotheses/ioi_smollm2_135m.yaml]
    grid:
      model: [smollm2-135m-instruct, ./ckpts/step1000, {name: EleutherAI/pythia-70m, revision: step3000}]
      seed: [0, 1]
    verify: {n_random: 10, robustness: false}

It is read like a hypothesis file: a located YAML composer, pydantic models that
forbid unknown keys, and every problem reported as ``file:line:column: field:
message`` (exit status 2, nothing run, nothing written). Paths (hypotheses,
local checkpoint folders) are relative to the sweep file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from circuitspec.errors import HypothesisError, Problem, SweepError
from circuitspec.spec.load import load_with_problems
from circuitspec.spec.locate import Loc, compose_located, locate, pydantic_problems
from circuitspec.spec.schema import Hypothesis

__all__ = ["Grid", "LoadedSweep", "ModelRef", "Resources", "Sweep", "SweepError", "VerifySettings",
           "json_schema", "load_sweep"]

_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?|mps)$")


def _device(value: str) -> str:
    if not _DEVICE.match(value):
        raise ValueError(f"device {value!r}: use cpu, cuda, cuda:N or mps")
    return value


def _distinct(values: list[Any]) -> list[Any]:
    seen: list[Any] = []
    for v in values:
        if v in seen:
            raise ValueError(f"{v!r} is listed twice; each value of an axis makes its own cells")
        seen.append(v)
    return values


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)


class ModelRef(_Strict):
    """One model of the ``model`` axis, when it needs more than a name."""

    name: str
    """Packaged alias, Hugging Face id, or a local save_pretrained folder (relative to the sweep
    file, or else to the working folder)."""
    revision: str | None = None
    """Hub revision (branch, tag or commit), e.g. step3000 for a Pythia training checkpoint."""
    label: str | None = None
    """Short name for tables and pictures (default: the folder name, or id@revision)."""


class Grid(_Strict):
    """The axes; every combination of their values is one cell. An axis left out keeps the
    hypothesis file's own value."""

    model: Annotated[list[str | ModelRef], AfterValidator(_distinct)] | None = Field(default=None, min_length=1)
    """Models: aliases, hub ids (``id@revision`` or a mapping with ``revision``), local folders."""
    seed: Annotated[list[int], AfterValidator(_distinct)] | None = Field(default=None, min_length=1)
    """Seeds of the prompts, the bootstrap and the nulls (task.seed)."""
    n_prompts: Annotated[list[Annotated[int, Field(ge=1)]], AfterValidator(_distinct)] | None = Field(
        default=None, min_length=1)
    """Numbers of prompts (task.n_prompts)."""
    semantics: Annotated[list[Literal["path", "direct"]], AfterValidator(_distinct)] | None = Field(
        default=None, min_length=1)
    """Edge semantics: path (Wang et al. path patching) and/or direct (ACDC edge patching)."""
    ablation: Annotated[list[Literal["mean", "resample", "zero"]], AfterValidator(_distinct)] | None = Field(
        default=None, min_length=1)
    """How heads outside the circuit are knocked out for the circuit scores."""
    ablation_level: Annotated[list[Literal["node", "edge"]], AfterValidator(_distinct)] | None = Field(
        default=None, min_length=1)
    """Level the faithfulness claim is judged at."""
    device: Annotated[list[Annotated[str, AfterValidator(_device)]], AfterValidator(_distinct)] | None = Field(
        default=None, min_length=1)
    """Torch devices (cpu, cuda, cuda:N); a cuda cell asks Ray for a GPU."""


class VerifySettings(_Strict):
    """How each cell runs verify (the same knobs and defaults as ``circuitspec verify``'s
    options, so a cell equals a plain verify run of the same settings)."""

    engine: Literal["auto", "fast", "reference"] = "auto"
    """Patching engine: the fast engine where it supports the model, or the reference one."""
    n_bootstrap: int | None = Field(default=None, ge=10)
    """Bootstrap resamples behind every interval (default: the hypothesis' claims.n_bootstrap)."""
    n_random: int = Field(default=100, ge=0)
    """Random circuits in the node-level faithfulness null."""
    n_random_edge: int = Field(default=20, ge=0)
    """Random circuits wired like the hypothesis in the edge-level null."""
    n_null_edges: int = Field(default=100, ge=0)
    """Layer-matched random sender groups per edge."""
    n_subsets: int = Field(default=20, ge=0)
    """Random subsets K for completeness."""
    greedy_steps: int = Field(default=2, ge=0)
    """Greedy search steps for the worst K in completeness."""
    per_head: bool = True
    """Report each sender head alone beside every edge."""
    scores: bool = True
    """Compute the circuit scores (faithfulness, completeness, minimality)."""
    robustness: bool = True
    """Add the robustness panel."""


class Resources(_Strict):
    """What each cell asks the Ray cluster for."""

    num_cpus: float = Field(default=1, gt=0)
    """CPUs per worker (torch uses as many threads)."""
    gpus_per_cuda_cell: float = Field(default=1, gt=0)
    """GPUs a worker for a cuda cell asks for (a fraction shares one GPU)."""
    workers_per_model: int = Field(default=1, ge=1)
    """Workers each model's cells are spread over; each loads the model once."""


class Sweep(_Strict):
    """A sweep: hypotheses verified over a grid of models and settings."""

    name: str
    """Short identifier, used in reports."""
    description: str | None = None
    """Free text, shown in reports."""
    hypotheses: list[str] = Field(min_length=1)
    """Hypothesis files, relative to the sweep file (or else to the working folder)."""
    grid: Grid = Grid()
    """The axes to vary."""
    verify: VerifySettings = VerifySettings()
    """Verify settings shared by every cell."""
    resources: Resources = Resources()
    """What each cell asks Ray for."""


@dataclass(frozen=True)
class LoadedSweep:
    """A validated sweep file with its hypotheses loaded and paths resolved."""

    spec: Sweep
    path: Path
    hypotheses: tuple[tuple[Path, Hypothesis], ...]
    """Each hypothesis file (resolved) and its validated content."""

    @property
    def folder(self) -> Path:
        return self.path.parent


def json_schema() -> dict[str, Any]:
    """The JSON Schema of sweep files."""
    schema = Sweep.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def _field_names() -> list[str]:
    models = (Sweep, Grid, VerifySettings, Resources, ModelRef)
    return sorted({n for m in models for n in m.model_fields})


def _problems(exc: ValidationError, data: Any, locations: dict[Loc, tuple[int, int]]) -> list[Problem]:
    problems = []
    for p in pydantic_problems(exc, data, locations, _field_names()):
        problems.append(p)
    return problems


def _shown(file: Path) -> Path:
    """``file`` relative to the working folder when it lies inside it (as a user would type it)."""
    try:
        return file.relative_to(Path.cwd())
    except ValueError:
        return file


def load_sweep(path: str | Path) -> LoadedSweep:
    """Read and validate a sweep file and every hypothesis it names; raise a located error."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SweepError(str(path), [Problem("", f"cannot read file: {getattr(exc, 'strerror', exc)}")]) from None
    data, locations, problems = compose_located(text)
    if data is None and not problems:
        problems.append(Problem("", "the file is empty; a sweep needs name, hypotheses and grid", 1, 1))
    elif data is not None and not isinstance(data, dict):
        problems.append(Problem("", "a sweep file must be a mapping (name, hypotheses, grid)", 1, 1))
    if problems:
        raise SweepError(str(path), problems)
    try:
        sweep = Sweep.model_validate(data)
    except ValidationError as exc:
        located = {p.field for p in problems}
        raise SweepError(str(path), problems + [p for p in _problems(exc, data, locations)
                                                if p.field not in located]) from None
    hypotheses = []
    seen: dict[str, int] = {}
    for i, ref in enumerate(sweep.hypotheses):
        file = (path.parent / ref).resolve() if not Path(ref).is_absolute() else Path(ref)
        if not file.is_file() and Path(ref).is_file():  # relative to the working folder instead
            file = Path(ref).resolve()
        if not file.is_file():
            problems.append(locate(("hypotheses", i), f"hypothesis file {ref!r} not found "
                                   f"(looked in {file.parent})", locations))
            continue
        hyp, hyp_problems = load_with_problems(_shown(file))
        if hyp_problems or hyp is None:
            # The hypothesis' own errors point into its own file.
            raise HypothesisError(str(file), hyp_problems)
        if hyp.name in seen:
            problems.append(locate(("hypotheses", i), f"hypotheses {seen[hyp.name]} and {i} are both "
                                   f"named {hyp.name!r}; cell ids and report rows use the name, so "
                                   "rename one", locations))
        seen[hyp.name] = i
        hypotheses.append((_shown(file), hyp))
    if problems:
        raise SweepError(str(path), problems)
    return LoadedSweep(sweep, path, tuple(hypotheses))
