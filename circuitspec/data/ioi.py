"""The indirect-object-identification (IOI) prompt generator, after Wang et al. 2022.

A prompt names two people, repeats one of them (the subject S), and ends where the
other (the indirect object IO) is the natural next word: "When Mary and John went
to the store, John gave a drink to" -> " Mary". The 15 BABA templates of the paper
and their ABBA mirrors are filled with names, places and objects that are a single
token (with the leading space) for the tokenizer at hand, so all prompts of one
template have the same length and the named positions line up.

Corruptions: ``abc`` replaces IO, S1 and S2 by three fresh distinct names (the
paper's); ``s_swap`` pairs each prompt with the one whose S2 is the other name
(the seed notebook's), keeping the clean answers.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from circuitspec.data.dataset import Dataset
from circuitspec.errors import TaskError

IOI_POSITIONS = ("END", "IO", "S1", "S1+1", "S2", "and")

# [S] is the subject (repeated), [IO] the indirect object; the answer [IO] is cut off.
BABA_TEMPLATES = (
    "Then, [S] and [IO] went to the [PLACE]. [S] gave a [OBJECT] to",
    "Then, [S] and [IO] had a lot of fun at the [PLACE]. [S] gave a [OBJECT] to",
    "Then, [S] and [IO] were working at the [PLACE]. [S] decided to give a [OBJECT] to",
    "Then, [S] and [IO] were thinking about going to the [PLACE]. [S] wanted to give a [OBJECT] to",
    "Then, [S] and [IO] had a long argument, and afterwards [S] said to",
    "After [S] and [IO] went to the [PLACE], [S] gave a [OBJECT] to",
    "When [S] and [IO] got a [OBJECT] at the [PLACE], [S] decided to give it to",
    "When [S] and [IO] got a [OBJECT] at the [PLACE], [S] decided to give the [OBJECT] to",
    "While [S] and [IO] were working at the [PLACE], [S] gave a [OBJECT] to",
    "While [S] and [IO] were commuting to the [PLACE], [S] gave a [OBJECT] to",
    "After the lunch, [S] and [IO] went to the [PLACE]. [S] gave a [OBJECT] to",
    "Afterwards, [S] and [IO] went to the [PLACE]. [S] gave a [OBJECT] to",
    "Then, [S] and [IO] had a long argument. Afterwards [S] said to",
    "The [PLACE] [S] and [IO] went to had a [OBJECT]. [S] gave it to",
    "Friends [S] and [IO] found a [OBJECT] at the [PLACE]. [S] gave it to",
)
# The mirrors: IO comes first, so S1+1 is the word after the pair rather than "and".
ABBA_TEMPLATES = tuple(t.replace("[S] and [IO]", "[IO] and [S]", 1) for t in BABA_TEMPLATES)
TEMPLATES = BABA_TEMPLATES + ABBA_TEMPLATES

NAMES = (
    "John Mary Tom James Dan Sid Martin Amy Anna Bob Carl Dave Eve Fred Gina Hugo Ivy Jack "
    "Kate Leo Mia Ned Olga Paul Rose Sam Tina Uma Vic Wendy Xena Yuri Zoe Michael David "
    "Sarah Laura Robert William Richard Thomas Charles Daniel Matthew Anthony Mark Paul "
    "Steven Andrew Joshua Kevin Brian George Edward Ryan Jacob Jason Jeff Frank Scott Eric "
    "Stephen Larry Justin Brandon Gregory Samuel Patrick Alexander Jack Dennis Jerry Tyler "
    "Aaron Henry Adam Peter Nathan Zach Kyle Walter Harold Jeremy Ethan Carl Keith Roger "
    "Gerald Christian Terry Sean Arthur Austin Noah Lawrence Jesse Joe Bryan Billy Jordan "
    "Albert Dylan Bruce Willie Gabriel Alan Juan Logan Wayne Ralph Roy Eugene Randy Vincent "
    "Russell Louis Philip Bobby Johnny Bradley Lisa Nancy Karen Betty Helen Sandra Donna "
    "Carol Ruth Sharon Michelle Laura Kimberly Deborah Jessica Shirley Cynthia Angela Melissa "
    "Brenda Amy Anna Rebecca Virginia Kathleen Pamela Martha Debra Amanda Stephanie Carolyn "
    "Christine Marie Janet Catherine Frances Ann Joyce Diane Alice Julie Heather Teresa Doris "
    "Gloria Evelyn Jean Cheryl Mildred Katherine Joan Ashley Judith Rose Janice Kelly Nicole "
    "Judy Christina Kathy Theresa Beverly Denise Tammy Irene Jane Lori Rachel Marilyn Andrea"
).split()
PLACES = (
    "store garden restaurant school hospital office house station shops park kitchen beach "
    "market church museum library hotel airport bank cafe"
).split()
OBJECTS = (
    "bag ball drink apple bottle milk ring kiss necklace snack computer basketball bone "
    "book pen phone key cake gift box"
).split()


def single_tokens(tokenizer: Any, words: list[str] | tuple[str, ...]) -> list[tuple[str, int]]:
    """The words that are one known token with a leading space, with that token id."""
    unk = getattr(tokenizer, "unk_token_id", None)
    kept = []
    for word in dict.fromkeys(words):
        ids = tokenizer(" " + word, add_special_tokens=False).input_ids
        if len(ids) == 1 and ids[0] != unk:
            kept.append((word, ids[0]))
    return kept


def ioi_positions(tokens: tuple[int, ...], io: int, s: int) -> dict[str, int] | None:
    """IO, S1, S1+1, S2, "and" and END in a token sequence, or None if it is not IOI-shaped."""
    io_at = [i for i, t in enumerate(tokens) if t == io]
    s_at = [i for i, t in enumerate(tokens) if t == s]
    if len(io_at) != 1 or len(s_at) != 2 or not s_at[0] < s_at[1]:
        return None
    return {
        "END": len(tokens) - 1,
        "IO": io_at[0],
        "S1": s_at[0],
        "S1+1": s_at[0] + 1,
        "S2": s_at[1],
        "and": min(io_at[0], s_at[0]) + 1,
    }


def fill(template: str, io: str, s1: str, s2: str, place: str, obj: str) -> str:
    text = template.replace("[IO]", io).replace("[S]", s1, 1).replace("[S]", s2, 1)
    return text.replace("[PLACE]", place).replace("[OBJECT]", obj)


def build_ioi(
    tokenizer: Any, *, n_prompts: int, seed: int, corruption: str, prepend_bos: bool,
    templates: Sequence[int] | None = None,
) -> Dataset:
    """Generate ``n_prompts`` IOI prompts with ``corruption`` (abc or s_swap), deterministically;
    ``templates`` restricts the draw to those template ids (0-14 BABA, 15-29 their ABBA mirrors)."""
    if templates is not None:
        bad = [t for t in templates if not 0 <= t < len(TEMPLATES)]
        if bad or not templates:
            raise TaskError(f"template ids must lie in 0-{len(TEMPLATES) - 1}, got {list(templates)}")
        allowed = sorted(set(templates))
    if corruption not in ("abc", "s_swap"):
        raise TaskError(f"the IOI generator supports corruption abc or s_swap, not {corruption!r}")
    if corruption == "s_swap" and n_prompts % 2:
        raise TaskError(f"s_swap pairs prompts, so n_prompts must be even, not {n_prompts}")
    names = single_tokens(tokenizer, NAMES)
    places = single_tokens(tokenizer, PLACES)
    objects = single_tokens(tokenizer, OBJECTS)
    if len(names) < 5 or not places or not objects:
        raise TaskError(
            f"this tokenizer keeps only {len(names)} names, {len(places)} places and "
            f"{len(objects)} objects as single tokens; the IOI generator needs at least 5, 1, 1"
        )
    bos = [tokenizer.bos_token_id] if prepend_bos else []
    ids = dict(names)

    def encode(text: str) -> tuple[int, ...]:
        return tuple(bos + tokenizer(text, add_special_tokens=False).input_ids)

    rng = random.Random(seed)
    rows: list[tuple[int, str, str]] = []  # template id, clean text, corrupted text
    answers: list[tuple[str, str]] = []  # (IO, S) names
    while len(rows) < n_prompts:
        t = rng.randrange(len(TEMPLATES)) if templates is None else rng.choice(allowed)
        io, s = rng.sample([w for w, _ in names], 2)
        place, obj = rng.choice(places)[0], rng.choice(objects)[0]
        if corruption == "abc":
            a, b, c = rng.sample([w for w, _ in names if w not in (io, s)], 3)
            rows.append((t, fill(TEMPLATES[t], io, s, s, place, obj),
                         fill(TEMPLATES[t], a, b, c, place, obj)))
            answers.append((io, s))
        else:
            # The partner has the mirror template with the names exchanged: same words up
            # to S2, whose name is the clean prompt's IO. Each is the other's corruption.
            mirror = (t + len(BABA_TEMPLATES)) % len(TEMPLATES)
            first = fill(TEMPLATES[t], io, s, s, place, obj)
            second = fill(TEMPLATES[mirror], s, io, io, place, obj)
            rows += [(t, first, second), (mirror, second, first)]
            answers += [(io, s), (s, io)]
    clean: list[tuple[int, ...]] = []
    corrupt: list[tuple[int, ...]] = []
    positions: dict[str, list[int]] = {name: [] for name in IOI_POSITIONS}
    for (t, clean_text, corrupt_text), (io, s) in zip(rows, answers, strict=True):
        toks, ctoks = encode(clean_text), encode(corrupt_text)
        pos = ioi_positions(toks, ids[io], ids[s])
        if pos is None or len(toks) != len(ctoks):
            raise TaskError(f"template {t} does not tokenize cleanly: {clean_text!r}")
        clean.append(toks)
        corrupt.append(ctoks)
        for name in IOI_POSITIONS:
            positions[name].append(pos[name])
    return Dataset(
        clean=tuple(clean),
        corrupt=tuple(corrupt),
        correct=tuple(ids[io] for io, _ in answers),
        incorrect=tuple(ids[s] for _, s in answers),
        positions={k: tuple(v) for k, v in positions.items()},
        template=tuple(r[0] for r in rows),
        prepend_bos=prepend_bos,
        clean_text=tuple(r[1] for r in rows),
        corrupt_text=tuple(r[2] for r in rows),
        notes={
            "task": "ioi",
            "corruption": corruption,
            "seed": seed,
            "names_kept": f"{len(names)}/{len(set(NAMES))}",
            "places_kept": f"{len(places)}/{len(PLACES)}",
            "objects_kept": f"{len(objects)}/{len(OBJECTS)}",
            # The draw's template restriction, so a discovery block can name these prompts.
            **({} if templates is None else {"templates": allowed}),
        },
    )
