"""IOI prompts over two templates of different lengths, ABC corruption, for the ablation tests."""

from __future__ import annotations

import random

from circuitspec.data.dataset import Dataset

TEMPLATES = (
    "When {A} and {B} went to the store , {S} gave a drink to",
    "Then {A} and {B} had a long argument . {S} said to",
)


NAMES = "John Mary Tom James Dan Sid Martin Amy Anna Bob Carl Dave".split()


def ioi_dataset(tokenizer, n: int = 8, seed: int = 0, fixed_corrupt: bool = False) -> Dataset:
    """IOI prompts over two templates (of different lengths), ABC corruption."""
    rng = random.Random(seed)
    rows: dict[str, list] = {k: [] for k in ("clean", "corrupt", "correct", "incorrect", "t", "end")}
    abc_per_template: dict[int, tuple[str, str, str]] = {}
    for i in range(n):
        t = i % len(TEMPLATES)
        a, b, c, d, e = rng.sample(NAMES, 5)
        if fixed_corrupt:  # every prompt of a template shares one corrupted prompt
            c, d, e = abc_per_template.setdefault(t, (c, d, e))
        clean = tokenizer(TEMPLATES[t].format(A=a, B=b, S=a))["input_ids"]
        corrupt = tokenizer(TEMPLATES[t].format(A=c, B=d, S=e))["input_ids"]
        rows["clean"].append(tuple(clean))
        rows["corrupt"].append(tuple(corrupt))
        rows["correct"].append(tokenizer(" " + b)["input_ids"][0])
        rows["incorrect"].append(tokenizer(" " + a)["input_ids"][0])
        rows["t"].append(t)
        rows["end"].append(len(clean) - 1)
    return Dataset(
        clean=tuple(rows["clean"]),
        corrupt=tuple(rows["corrupt"]),
        correct=tuple(rows["correct"]),
        incorrect=tuple(rows["incorrect"]),
        positions={"END": tuple(rows["end"]), "S2": tuple(e - 2 for e in rows["end"])},
        template=tuple(rows["t"]),
        prepend_bos=False,
    )
