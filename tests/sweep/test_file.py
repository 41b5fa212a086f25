"""Sweep files: validation (located errors, exit 2, nothing written) and grid expansion."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.paths import ROOT

from circuitspec.errors import HypothesisError, SweepError
from circuitspec.spec.load import load_hypothesis
from circuitspec.sweep.grid import expand
from circuitspec.sweep.spec import json_schema, load_sweep

BAD = sorted((ROOT / "tests" / "bad_sweeps").glob("*.yaml"))
HYP = ROOT / "hypotheses" / "ioi_smollm2_135m.yaml"


def test_the_corpus_covers_the_common_mistakes():
    assert len(BAD) >= 12


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_sweep_is_reported_at_its_line_and_writes_nothing(path: Path, tmp_path: Path):
    field, line = re.match(r"# expect: (\S+) @ (\d+)", path.read_text()).groups()
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "circuitspec.cli", "sweep", str(path), "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, text
    assert "Traceback" not in text
    assert re.search(rf"{re.escape(path.name)}:{line}:\d+: ", text), text
    assert field in text, text
    assert not out.exists()


def test_a_broken_hypothesis_is_reported_in_its_own_file(tmp_path: Path):
    hyp = tmp_path / "h.yaml"
    hyp.write_text(HYP.read_text().replace("role: name_mover", "role: name_moover", 1))
    sweep = tmp_path / "s.yaml"
    sweep.write_text("name: s\nhypotheses: [h.yaml]\n")
    with pytest.raises(HypothesisError) as info:
        load_sweep(sweep)
    assert not isinstance(info.value, SweepError)
    assert re.search(r"h\.yaml:\d+:\d+: nodes\.\w+\.role: 'name_moover' is not allowed", str(info.value))


def _sweep(tmp_path: Path, grid: str) -> Path:
    (tmp_path / "ckpt").mkdir(exist_ok=True)
    (tmp_path / "ckpt" / "config.json").write_text("{}")
    path = tmp_path / "s.yaml"
    path.write_text(f"name: s\nhypotheses: [{HYP}]\ngrid:\n{grid}")
    return path


def test_expansion_is_the_product_of_the_axes_with_unique_readable_ids(tmp_path: Path):
    path = _sweep(tmp_path, "  model: [smollm2-135m-instruct, ./ckpt, 'EleutherAI/pythia-70m@step3000']\n"
                            "  seed: [0, 1]\n  ablation: [mean, zero]\n")
    cells = expand(load_sweep(path))
    assert len(cells) == 3 * 2 * 2
    assert len({c.id for c in cells}) == len({c.key for c in cells}) == 12
    refs = {(c.model.ref, c.model.revision, c.model_label) for c in cells}
    assert refs == {("smollm2-135m-instruct", None, "smollm2-135m-instruct"),
                    (str((tmp_path / "ckpt").resolve()), None, "ckpt"),
                    ("EleutherAI/pythia-70m", "step3000", "EleutherAI/pythia-70m@step3000")}
    first = cells[0]
    # Axes the grid leaves out keep the file's values (task.n_prompts: 128; the defaults otherwise).
    level = load_hypothesis(HYP).ablation_level
    assert first.axes == {"seed": 0, "n_prompts": 128, "semantics": "path", "ablation": "mean",
                          "ablation_level": level, "device": "cpu"}
    assert "seed0" in first.id and "ablationmean" in first.id and "semantics" not in first.id


def test_keys_change_with_exactly_the_inputs(tmp_path: Path):
    path = _sweep(tmp_path, "  model: [./ckpt]\n  seed: [0]\n")
    key = expand(load_sweep(path))[0].key
    assert expand(load_sweep(path))[0].key == key  # deterministic
    (tmp_path / "ckpt" / "config.json").write_text('{"changed": 1}')  # a re-saved checkpoint
    assert expand(load_sweep(path))[0].key != key
    key = expand(load_sweep(path))[0].key
    path.write_text(path.read_text() + "verify: {n_random: 3}\n")
    assert expand(load_sweep(path))[0].key != key


def test_schema_describes_every_field():
    schema = json_schema()
    grid = schema["$defs"]["Grid"]["properties"]
    assert set(grid) == {"model", "seed", "n_prompts", "semantics", "ablation", "ablation_level", "device"}
    assert all(p.get("description") for p in grid.values())


def test_the_docs_sweep_validates_against_the_printed_schema():
    import json

    import jsonschema
    from ruamel.yaml import YAML

    proc = subprocess.run([sys.executable, "-m", "circuitspec.cli", "schema", "--sweep"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    schema = json.loads(proc.stdout)
    docs = ROOT / "docs" / "sweeps" / "packaged.yaml"
    data = YAML(typ="safe", pure=True).load(docs.read_text())
    jsonschema.validate(data, schema)
    assert len(expand(load_sweep(docs))) == 6  # two hypotheses x three seeds
    data["grid"]["seeds"] = [0]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, schema)


def test_an_address_where_no_cluster_answers_exits_2_and_writes_nothing(tmp_path: Path):
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sweep = tmp_path / "s.yaml"
    sweep.write_text(f"name: s\nhypotheses: [{HYP}]\n")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "circuitspec.cli", "sweep", str(sweep), "--out", str(out),
                           "--address", f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert f"--address 127.0.0.1:{port}: no Ray cluster answers there" in proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()


def test_a_model_folder_is_found_beside_the_sweep_file_or_else_in_the_working_folder(tmp_path: Path):
    from circuitspec.sweep.grid import resolve_model

    beside, cwd = tmp_path / "sweeps", tmp_path / "work"
    (beside / "ckpts" / "a").mkdir(parents=True)
    (cwd / "ckpts" / "b").mkdir(parents=True)
    assert resolve_model("./ckpts/a", beside, cwd)[0] == str((beside / "ckpts" / "a").resolve())
    assert resolve_model("./ckpts/b", beside, cwd)[:2] == (str((cwd / "ckpts" / "b").resolve()), None)
    assert resolve_model("./ckpts/c", beside, cwd)[0] == str((beside / "ckpts" / "c").resolve())  # fails later
    assert resolve_model("EleutherAI/pythia-70m@step1", beside, cwd) == (
        "EleutherAI/pythia-70m", "step1", "EleutherAI/pythia-70m@step1")


def test_pictures_vary_over_the_axes_that_vary_and_not_twice_over_lockstep_ones(tmp_path: Path):
    from circuitspec.sweep.pictures import varied_axes
    from circuitspec.sweep.store import CellState

    path = _sweep(tmp_path, "  model: [smollm2-135m-instruct, ./ckpt]\n  seed: [0, 1]\n")
    states = [CellState(c, "pending") for c in expand(load_sweep(path))]
    assert varied_axes(states) == ["model", "seed"]
    only_seed0 = [s for s in states if s.cell.axes["seed"] == 0]
    assert varied_axes(only_seed0) == ["model"]
    # One cell per (model, seed) pair on a diagonal: seed moves in lockstep with model.
    diagonal = [s for s in states if (s.cell.model_label == "ckpt") == (s.cell.axes["seed"] == 1)]
    assert varied_axes(diagonal) == ["model"]


def test_sweep_cells_default_to_the_verify_defaults():
    """A sweep cell with no `verify:` section must run what `circuitspec verify` runs."""
    from circuitspec.sweep.spec import VerifySettings
    from circuitspec.verification.settings import Options

    cell, plain = VerifySettings(), Options()
    for key in VerifySettings.model_fields:
        if hasattr(plain, key):
            assert getattr(cell, key) == getattr(plain, key), key
