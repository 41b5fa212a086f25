"""The task layer: the IOI generator and custom prompt sets, on a word-level tokenizer."""

from __future__ import annotations

import pytest
from helpers.factories import word_tokenizer

from circuitspec.data.ioi import ABBA_TEMPLATES, BABA_TEMPLATES
from circuitspec.data.tasks import NOTEBOOK_PROMPTS, build_dataset, task_positions
from circuitspec.errors import TaskError
from circuitspec.spec.schema import PromptRecord, TaskSpec


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return word_tokenizer(tmp_path_factory.mktemp("tok"))


def ioi(tok, corruption="abc", n=40, seed=0, bos=False):
    task = TaskSpec(kind="ioi", n_prompts=n, seed=seed, corruption=corruption)
    return build_dataset(task, tok, prepend_bos=bos)


def test_templates_are_the_papers_fifteen_and_their_mirrors():
    assert len(BABA_TEMPLATES) == len(ABBA_TEMPLATES) == 15
    for baba, abba in zip(BABA_TEMPLATES, ABBA_TEMPLATES, strict=True):
        assert "[S] and [IO]" in baba and "[IO] and [S]" in abba


def test_ioi_positions_point_at_the_names(tok):
    data = ioi(tok)
    assert len(data) == 40
    for i, toks in enumerate(data.clean):
        p = {name: idx[i] for name, idx in data.positions.items()}
        assert toks[p["IO"]] == data.correct[i]
        assert toks[p["S1"]] == toks[p["S2"]] == data.incorrect[i]
        assert p["S1+1"] == p["S1"] + 1 and p["END"] == len(toks) - 1
        assert tok.decode([toks[p["and"]]]) == " and"
        assert p["S1"] < p["S2"] and p["IO"] < p["S2"]
        assert tok.decode([data.correct[i]]).startswith(" ")


def test_ioi_is_deterministic_and_seeded(tok):
    assert ioi(tok, seed=3).clean == ioi(tok, seed=3).clean
    assert ioi(tok, seed=3).clean != ioi(tok, seed=4).clean


def test_prompts_of_one_template_have_equal_length(tok):
    data = ioi(tok, n=120)
    lengths: dict[int, set[int]] = {}
    for t, toks in zip(data.template, data.clean, strict=True):
        lengths.setdefault(t, set()).add(len(toks))
    assert all(len(v) == 1 for v in lengths.values())
    assert len(lengths) > 10  # both BABA and ABBA templates are drawn


def test_abc_replaces_the_three_names_with_fresh_distinct_ones(tok):
    data = ioi(tok)
    for i, (clean, corrupt) in enumerate(zip(data.clean, data.corrupt, strict=True)):
        spots = [data.positions[k][i] for k in ("IO", "S1", "S2")]
        fresh = [corrupt[j] for j in spots]
        assert len(set(fresh)) == 3
        assert not set(fresh) & {data.correct[i], data.incorrect[i]}
        assert [a for j, a in enumerate(clean) if j not in spots] == [
            b for j, b in enumerate(corrupt) if j not in spots
        ]


def test_s_swap_pairs_each_prompt_with_its_mirror(tok):
    data = ioi(tok, corruption="s_swap", n=20)
    for i in range(len(data)):
        partner = i ^ 1
        assert data.corrupt[i] == data.clean[partner]
        s2 = data.positions["S2"][i]
        diff = [j for j, (a, b) in enumerate(zip(data.clean[i], data.corrupt[i], strict=True)) if a != b]
        assert diff == [s2]
        assert data.corrupt[i][s2] == data.correct[i]  # S2 became the other name
        assert (data.correct[partner], data.incorrect[partner]) == (data.incorrect[i], data.correct[i])


def test_s_swap_needs_an_even_count(tok):
    with pytest.raises(TaskError, match="even"):
        ioi(tok, corruption="s_swap", n=5)


def test_prepend_bos_shifts_positions(tok):
    plain, bos = ioi(tok, n=4), ioi(tok, n=4, bos=True)
    assert all(t[0] == tok.bos_token_id for t in bos.clean)
    assert bos.positions["IO"] == tuple(p + 1 for p in plain.positions["IO"])


def test_notes_report_what_the_tokenizer_kept(tok):
    notes = ioi(tok, n=2).notes
    kept, total = map(int, notes["names_kept"].split("/"))
    assert 30 <= kept < total  # the word tokenizer knows only the factory's names
    assert notes["corruption"] == "abc"


def _prompts(*records, **kw):
    return TaskSpec(kind="prompts", prompts=[PromptRecord(**r) for r in records], **kw)


JOHN = dict(
    clean="When John and Mary went to the shops, John gave the bag to",
    corrupted="When John and Mary went to the shops, Mary gave the bag to",
    correct=" Mary", incorrect=" John",
)


def test_prompts_find_ioi_positions_automatically(tok):
    data = build_dataset(_prompts(JOHN), tok, prepend_bos=True)
    assert set(data.positions) >= {"END", "IO", "S1", "S1+1", "S2"}
    assert data.positions["S2"] == (10,)  # BOS When John and Mary went to the shops , John
    assert task_positions(_prompts(JOHN)) >= {"IO", "S2"}


def test_prompts_explicit_positions(tok):
    rec = dict(clean="Then John went to the park", corrupted="Then Mary went to the park",
               correct=" park", incorrect=" shops", positions={"NAME": 1, "LAST": -1})
    data = build_dataset(_prompts(rec), tok, prepend_bos=False)
    assert data.positions == {"END": (5,), "LAST": (5,), "NAME": (1,)}
    assert task_positions(_prompts(rec)) == {"END", "LAST", "NAME"}


def test_prompts_reject_multi_token_answers_naming_the_prompt(tok):
    bad = dict(JOHN, correct=" Zachary")
    with pytest.raises(TaskError, match=r"prompt 1 .*' Zachary'.*single token") as info:
        build_dataset(_prompts(JOHN, bad), tok, prepend_bos=False)
    assert info.value.loc == ("task", "prompts", 1, "correct")


def test_prompts_reject_length_mismatch(tok):
    bad = dict(JOHN, corrupted="When John and Mary went to the shops, Mary gave a bag to the")
    with pytest.raises(TaskError, match="prompt 0: clean is 14 tokens but corrupted is 15"):
        build_dataset(_prompts(bad), tok, prepend_bos=False)


def test_prompts_reject_an_empty_list(tok):
    with pytest.raises(TaskError, match="empty"):
        build_dataset(TaskSpec(kind="prompts", prompts=[]), tok, prepend_bos=False)


def test_prompts_from_jsonl(tok, tmp_path):
    import json

    (tmp_path / "p.jsonl").write_text(json.dumps(JOHN) + "\n\n" + json.dumps(JOHN) + "\n")
    task = TaskSpec(kind="prompts", file=str(tmp_path / "p.jsonl"))
    assert len(build_dataset(task, tok, prepend_bos=False)) == 2
    (tmp_path / "p.jsonl").write_text('{"clean": "x"}\n')
    with pytest.raises(TaskError, match="p.jsonl line 1"):
        build_dataset(task, tok, prepend_bos=False)


def test_builtin_notebook_prompts(tok):
    data = build_dataset(TaskSpec(kind="prompts", builtin="notebook"), tok, prepend_bos=True)
    assert len(data) == len(NOTEBOOK_PROMPTS) == 8
    assert data.corrupt[0] == data.clean[1] and data.corrupt[1] == data.clean[0]
    assert tok.decode([data.correct[0]]) == " Mary" and tok.decode([data.incorrect[0]]) == " John"
    assert "S2" in data.positions


@pytest.mark.real
def test_ioi_prompts_on_the_smollm2_tokenizer(smollm2):
    tok = smollm2.tokenizer  # the tokenizer verify uses, as load_model returns it
    data = ioi(tok, n=64)
    kept, total = map(int, data.notes["names_kept"].split("/"))
    assert kept > 50
    i = 0
    words = [tok.decode([t]) for t in data.clean[i]]
    assert "".join(words) == data.clean_text[i]
    assert words[data.positions["IO"][i]] == tok.decode([data.correct[i]])
    assert words[data.positions["S2"][i]] == tok.decode([data.incorrect[i]])
    notebook = build_dataset(TaskSpec(kind="prompts", builtin="notebook"), tok, prepend_bos=False)
    assert tok.decode(notebook.clean[0]) == NOTEBOOK_PROMPTS[0][0]
