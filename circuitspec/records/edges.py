"""The records of the edges of a Result: the metric baselines, each edge's effect, interval,
verdict, per-head breakdown and null, as ``results.json`` holds them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from pydantic import Field

from circuitspec.records.fields import (
    CONFIG,
    LOADS_AS_NONE,
    OMIT_NONE,
    Interval,
    Num,
    PerPrompt,
    Verdict,
)

__all__ = ["EdgeResult", "Expectation", "HeadEffect", "MetricResult", "NullDistribution"]


@dataclass(frozen=True)
class MetricResult:
    """The task metric on unpatched runs: logit(correct) - logit(incorrect) at the end."""

    __pydantic_config__ = CONFIG

    name: str
    """Metric name; ``logit_diff``."""
    clean: Num
    """Mean metric over clean prompts, M_clean."""
    corrupt: Num
    """Mean metric over corrupted prompts, M_corrupt."""
    clean_ci: Interval | None = None
    """Bootstrap interval of ``clean``."""
    corrupt_ci: Interval | None = None
    """Bootstrap interval of ``corrupt``."""
    per_prompt: Annotated[PerPrompt | None, OMIT_NONE] = None
    """Per-prompt values: ``clean`` and ``corrupt`` metric, ``template`` id, so every
    interval can be recomputed from the file."""


# --- edges ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expectation:
    """What the hypothesis claims about an edge's effect."""

    __pydantic_config__ = CONFIG

    sign: str | None = "negative"
    """``negative`` (patching hurts the metric), ``positive`` or ``any``."""
    min_effect: Num = None
    """Smallest |effect| that counts as real; the verdict threshold."""


@dataclass(frozen=True)
class HeadEffect:
    """Effect of patching one sender head alone along the edge (the per-head breakdown)."""

    __pydantic_config__ = CONFIG

    head: str
    """The head, e.g. ``"L9H9"``."""
    effect: Annotated[Num, LOADS_AS_NONE]
    """Normalised effect of this head alone."""
    ci: Interval | None = None
    """Bootstrap interval of ``effect``."""


@dataclass(frozen=True)
class NullDistribution:
    """Effects of random stand-ins (random sender heads, random circuits) for comparison.

    Every field after ``n`` is written only when it is set."""

    __pydantic_config__ = CONFIG

    mean: Annotated[Num, LOADS_AS_NONE]
    """Mean of the null samples."""
    low: Annotated[Num, LOADS_AS_NONE]
    """Lower quantile of the null samples."""
    high: Annotated[Num, LOADS_AS_NONE]
    """Upper quantile of the null samples."""
    n: int
    """Number of null samples."""
    real: Annotated[Num, OMIT_NONE] = None
    """The real value compared with the samples (the circuit's faithfulness), if any."""
    fraction_beaten: Annotated[Num, OMIT_NONE] = None
    """Fraction of the samples that ``real`` exceeds."""
    p_value: Annotated[Num, OMIT_NONE] = None
    """(1 + #samples at least as extreme as real) / (1 + n)."""
    kind: Annotated[str | None, OMIT_NONE] = None
    """How the samples were drawn: ``layer_matched`` (random heads of the same layers, outside
    the hypothesis; see :mod:`circuitspec.scoring.nulls`)."""
    off_layer: Annotated[int | None, OMIT_NONE] = None
    """Heads, over all samples, placed outside their layer because it had too few spare heads."""
    nonfinite: Annotated[int | None, OMIT_NONE] = None
    """Samples that were NaN or infinite: counted as at least as extreme, left out of the band."""
    layers: Annotated[tuple[int, ...] | None, OMIT_NONE] = None
    """Per-edge null: the layers the random sender groups' heads came from."""
    widened: Annotated[bool | None, OMIT_NONE] = None
    """Per-edge null: True when the senders' own layers had too few distinct groups, so heads
    came from the nearest other layers too (the groups are then not layer-matched)."""
    n_distinct: Annotated[int | None, OMIT_NONE] = None
    """Per-edge null: how many distinct random sender groups there were to draw from."""


@dataclass(frozen=True)
class EdgeResult:
    """The path-patching verdict on one edge of the hypothesis."""

    __pydantic_config__ = CONFIG

    sender: Annotated[str, Field(alias="from")]
    """Sending node group (JSON ``from``)."""
    receiver: Annotated[str, Field(alias="to")]
    """Receiving node group, or ``logits`` (JSON ``to``)."""
    via: Annotated[str | None, LOADS_AS_NONE]
    """Receiver input the path enters through: ``q``, ``k``, ``v``; ``None`` into logits."""
    at: Annotated[str | tuple[str, ...] | None, LOADS_AS_NONE]
    """Position label(s) where the receiver reads the path, e.g. ``END``, ``S2``, ``S1+1``."""
    metric_patched: Annotated[Num, LOADS_AS_NONE]
    """Mean metric with the path patched, M_patched."""
    effect: Num
    """(M_patched - M_clean) / (M_clean - M_corrupt)."""
    ci: Annotated[Interval | None, LOADS_AS_NONE]
    """Bootstrap interval of ``effect``."""
    verdict: Verdict
    """Whether the edge carries the claimed effect."""
    reason: str = ""
    """One sentence on why the verdict was reached."""
    expect: Expectation = field(default_factory=Expectation)
    """The claim the verdict was judged against."""
    per_head: tuple[HeadEffect, ...] = ()
    """Each sender head patched alone."""
    null: Annotated[NullDistribution | None, OMIT_NONE] = None
    """Effects of random sender groups of the same size, if computed."""
    per_prompt: Annotated[tuple[Num, ...] | None, OMIT_NONE] = None
    """The patched metric on each prompt (same order as ``metric.per_prompt``)."""

    @property
    def name(self) -> str:
        """Stable edge id, as ``spec.Edge.name``: ``sender->receiver.via@at``."""
        at = ",".join(self.at) if isinstance(self.at, tuple) else self.at
        return f"{self.sender}->{self.receiver}" + (f".{self.via}" if self.via else "") + (
            f"@{at}" if at else "")
