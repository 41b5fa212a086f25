"""Three hand-written IOI prompts of one length (positions known by hand), for the engine tests."""

from __future__ import annotations

from circuitspec.data.dataset import Dataset

CLEAN = [
    " When John and Mary went to the shops, John gave the bag to",
    " When Tom and James went to the park, James gave the ball to",
    " When Dan and Sid went to the store, Sid gave an apple to",
]


CORRUPT = [
    " When Amy and Bob went to the shops, Carl gave the bag to",
    " When Eve and Fred went to the park, Gina gave the ball to",
    " When Hugo and Ivy went to the store, Jack gave an apple to",
]


ANSWERS = [(" Mary", " John"), (" Tom", " James"), (" Dan", " Sid")]


def ioi_dataset(tokenizer) -> Dataset:
    def ids(text):
        return tuple(tokenizer(text, add_special_tokens=False).input_ids)

    clean = [ids(t) for t in CLEAN]
    n = len(clean[0])
    return Dataset(
        clean=tuple(clean),
        corrupt=tuple(ids(t) for t in CORRUPT),
        correct=tuple(ids(a)[0] for a, _ in ANSWERS),
        incorrect=tuple(ids(b)[0] for _, b in ANSWERS),
        positions={"END": (n - 1,) * 3, "S2": (9,) * 3, "S1+1": (2,) * 3, "IO": (1,) * 3},
        template=(0, 0, 0),
        prepend_bos=False,
    )
