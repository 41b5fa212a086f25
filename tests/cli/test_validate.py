"""`circuitspec validate` and `circuitspec schema`, run as a user runs them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers.cli import cli
from helpers.paths import ROOT

BAD = sorted((ROOT / "tests" / "bad_hypotheses").glob("*.yaml"))
GOOD = sorted((ROOT / "hypotheses").glob("*.yaml"))


def test_the_corpus_covers_the_common_mistakes():
    assert len(BAD) >= 28


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_hypothesis_is_reported_at_its_line(path: Path):
    field, line = re.match(r"# expect: (\S+) @ (\d+)", path.read_text()).groups()
    proc = cli("validate", str(path.relative_to(ROOT)))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "Traceback" not in out
    assert re.search(rf"{re.escape(path.name)}:{line}:\d+: ", out), out
    assert field in out, out


@pytest.mark.parametrize("path", GOOD, ids=[p.stem for p in GOOD])
def test_repo_hypotheses_validate(path: Path):
    proc = cli("validate", str(path.relative_to(ROOT)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "valid" in proc.stdout


def test_schema_accepts_repo_hypotheses_and_rejects_unknown_keys():
    import jsonschema
    from ruamel.yaml import YAML

    proc = cli("schema")
    assert proc.returncode == 0
    schema = json.loads(proc.stdout)
    assert "from" in json.dumps(schema["$defs"]["EdgeSpec"]["properties"])
    yaml = YAML(typ="safe", pure=True)
    for path in GOOD:
        jsonschema.validate(yaml.load(path.read_text()), schema)
    data = yaml.load(GOOD[0].read_text())
    data["semantic"] = "path"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, schema)


def _write(tmp_path: Path, model: str, heads: str, task: str = "{kind: ioi, n_prompts: 8}") -> Path:
    path = tmp_path / "hyp.yaml"
    path.write_text(
        f"name: tiny\nmodel: {model}\ntask: {task}\n"
        f"nodes:\n  movers: {{role: name_mover, heads: [{heads}]}}\n"
        "edges:\n  - {from: movers, to: logits, at: END}\n"
    )
    return path


def test_heads_are_checked_against_a_local_model(tiny_model_dirs, tmp_path):
    llama = tiny_model_dirs["llama"]
    proc = cli("validate", str(_write(tmp_path, str(llama), "L2H3, L3H0, L1H4, MLP3")))
    assert proc.returncode == 2
    assert ":5:" in proc.stderr and "L3H0" in proc.stderr and "layers 0-2" in proc.stderr
    assert "L1H4" in proc.stderr and "heads 0-3" in proc.stderr
    assert "MLP3" in proc.stderr
    assert cli("validate", str(_write(tmp_path, str(llama), "L2H3, MLP1"))).returncode == 0


def test_prompts_are_tokenized_with_a_local_tokenizer(tiny_model_dirs, tmp_path):
    gpt2 = str(tiny_model_dirs["gpt2"])
    record = ('{clean: "When John and Mary went to the shops, John gave the bag to", '
              'corrupted: "When John and Mary went to the shops, Mary gave the bag to", '
              'correct: " Mary", incorrect: " %s"}')
    good = _write(tmp_path, gpt2, "L2H3", "{kind: prompts, prompts: [%s]}" % (record % "John"))
    proc = cli("validate", str(good))
    assert proc.returncode == 0, proc.stderr
    bad = _write(tmp_path, gpt2, "L2H3", "{kind: prompts, prompts: [%s]}" % (record % "Zachary"))
    proc = cli("validate", str(bad))
    assert proc.returncode == 2
    assert "hyp.yaml:3:" in proc.stderr and "task.prompts[0].incorrect" in proc.stderr


def test_unknown_hub_model_offline_skips_model_checks(tmp_path):
    proc = cli("validate", "--offline", str(_write(tmp_path, "someorg/somemodel", "L99H99")))
    assert proc.returncode == 0, proc.stderr
    assert "model checks skipped" in proc.stderr


def test_every_problem_is_reported(tmp_path):
    path = _write(tmp_path, "smollm2-135m-instruct", "L31H0, L2H9")
    path.write_text(path.read_text() + "semantics: pathh\n  # trailing\n")
    proc = cli("validate", str(path))
    lines = [ln for ln in proc.stderr.splitlines() if "hyp.yaml:" in ln]
    assert len(lines) == 1  # the pydantic error stops before the model checks
    path.write_text(path.read_text().replace("semantics: pathh", "ablation: mean"))
    proc = cli("validate", str(path))
    lines = [ln for ln in proc.stderr.splitlines() if "hyp.yaml:" in ln]
    assert len(lines) == 2 and "L31H0" in lines[0] and "L2H9" in lines[1]


def test_missing_file_is_a_clean_error():
    proc = cli("validate", "no/such/file.yaml")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
