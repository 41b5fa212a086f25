"""Held-out verification: the prompts a circuit is verified on must not be those it was found on.

A circuit found by arg-max sweeps on some prompts and "verified" on the same prompts is
judged after selection (a winner's curse the nulls do not account for). A hypothesis
records how it was found (``discovery: {seed, n_prompts, templates, corruption}``;
``suggest`` writes it); :func:`held_out_status` regenerates those discovery prompts, with
the discovery's own corruption (default abc), and compares them with the verification
prompts. Any shared prompt makes the run in-sample: ``results.json``
says ``held_out: false`` and the run cannot pass unless ``--in-sample`` is given. With
``task.templates`` (or ``--held-out-templates``) disjoint from ``discovery.templates``
the run is held out by template as well. A file without ``discovery`` cannot be checked:
``held_out`` is ``null``; so is a task with its own prompts (``kind: prompts``) that shares
none with the generator prompts ``discovery`` names, since those may not be the prompts it
was found on (one shared prompt still makes it in-sample).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from circuitspec.data.ioi import TEMPLATES, build_ioi
from circuitspec.errors import TaskError

if TYPE_CHECKING:
    from circuitspec.data.dataset import Dataset
    from circuitspec.spec.schema import Hypothesis

__all__ = ["HeldOut", "held_out_status"]


@dataclass(frozen=True)
class HeldOut:
    """Whether the verification prompts are disjoint from the discovery prompts."""

    held_out: bool | None
    """True: disjoint; False: some prompts shared; None: unknown (no discovery, or own prompts)."""
    overlap: int
    """Verification prompts that are also discovery prompts."""
    n_discovery: int | None
    """Discovery prompts compared against."""
    templates_disjoint: bool | None
    """Whether no verification template was used in discovery (None: not known)."""
    in_sample: bool
    """``--in-sample`` was given: an in-sample run may pass."""
    reason: str

    @property
    def blocks(self) -> bool:
        """An in-sample run without ``--in-sample``: it cannot pass."""
        return self.held_out is False and not self.in_sample

    def info(self) -> dict[str, Any]:
        return {"held_out": self.held_out, "overlap": self.overlap, "n_discovery": self.n_discovery,
                "templates_disjoint": self.templates_disjoint, "in_sample": self.in_sample,
                "reason": self.reason}


def _discovery_texts(disc: Any, tokenizer: Any, prepend_bos: bool) -> set[str]:
    """The clean texts of the prompts ``disc`` names.

    ``templates`` is the restriction the discovery *drew* with, and a restricted draw names
    other prompts than an unrestricted one of the same seed. ``suggest --grow-edges`` used to
    write the templates its unrestricted prompts happened to use, so a record whose templates
    are exactly those of the unrestricted draw is ambiguous: both draws are compared (an
    unrecognised in-sample run would otherwise be called held out)."""
    def draw(templates: list[int] | None) -> Any:
        return build_ioi(tokenizer, n_prompts=disc.n_prompts, seed=disc.seed, corruption=disc.corruption,
                         prepend_bos=prepend_bos, templates=templates)

    found = draw(disc.templates)
    texts = set(found.clean_text)
    if disc.templates is not None:
        plain = draw(None)
        if set(plain.template) == set(disc.templates):
            texts |= set(plain.clean_text)
    return texts


def held_out_status(hyp: Hypothesis, dataset: Dataset, tokenizer: Any, *, in_sample: bool,
                    templates: list[int] | None = None) -> HeldOut:
    """Compare the verification ``dataset`` with the prompts ``hyp.discovery`` names."""
    disc = hyp.discovery
    if disc is None:
        return HeldOut(None, 0, None, None, in_sample,
                       "the hypothesis records no discovery (seed, n_prompts), so it cannot be "
                       "checked that the verification prompts are held out")
    # The discovery prompts are regenerated with the discovery's own corruption: abc draws
    # three extra names per prompt and s_swap pairs them, so one seed names different prompts
    # under each, and the task's corruption may not be the one discovery used.
    try:
        texts = _discovery_texts(disc, tokenizer, dataset.prepend_bos)
    except TaskError:
        if hyp.task.kind == "ioi":
            raise
        texts = set()  # own prompts, for a tokenizer the generator cannot serve: unknown below
    overlap = sum(text in texts for text in dataset.clean_text)
    used = set(range(len(TEMPLATES))) if disc.templates is None else set(disc.templates)
    verify_templates = templates if templates is not None else hyp.task.templates
    templates_disjoint = None if hyp.task.kind != "ioi" else not (set(dataset.template) & used)
    n = len(dataset)
    if hyp.task.kind != "ioi" and not overlap:
        # discovery names IOI generator prompts; a task with its own prompts may have been
        # explored on those very prompts, which the discovery block cannot name: unknown.
        return HeldOut(None, 0, disc.n_prompts, None, in_sample,
                       f"discovery names IOI generator prompts (seed {disc.seed}, first "
                       f"{disc.n_prompts}, {disc.corruption}); none of them is among this task's "
                       f"{n} own prompts, but the discovery block cannot name own prompts, so "
                       "whether these were used in discovery is unknown")
    reason = ("discovery names IOI generator prompts, but this task brings its own; "
              if hyp.task.kind != "ioi" else "")
    if overlap:
        reason += (f"{overlap} of the {n} verification prompts are discovery prompts (seed "
                   f"{disc.seed}, first {disc.n_prompts}): the run is in-sample, after selection")
        reason += (", allowed by --in-sample" if in_sample else
                   "; give the task another seed, or pass --in-sample to accept that")
    else:
        reason += (f"none of the {n} verification prompts is among the {disc.n_prompts} discovery "
                   f"prompts (seed {disc.seed}, {disc.corruption})")
        if templates_disjoint:
            reason += f"; its templates {sorted(set(verify_templates or dataset.template))} were not used in discovery"
    return HeldOut(overlap == 0, overlap, disc.n_prompts, templates_disjoint, in_sample, reason)
