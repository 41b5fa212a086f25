"""`circuitspec sweep` on local Ray: tiny checkpoints x two seeds, one bad model, a kill, a resume.

The checkpoints are built so the answers are known by hand (tests/helpers/checkpoints.py): on
``works`` the hypothesis' edge has effect exactly -1 (verified), on ``broken`` exactly 0
(refuted), and ``missing`` is a folder that does not exist (a bad cell, reported in its
row). The sweep is killed (SIGTERM, as `kill` or a scheduler does; Ctrl-C takes the same
path) once a cell has run on Ray, resumed with the same command, then run a third time,
which must do no work.
"""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from helpers.checkpoints import save_silenced, write_late_hypothesis
from helpers.cli import CLI

import circuitspec as cs

CHEAP = {"n_random": 0, "n_null_edges": 0, "n_bootstrap": 100, "n_subsets": 2, "greedy_steps": 0,
         "per_head": False, "robustness": False}
SWEEP = """name: tiny-checkpoints
hypotheses: [late.yaml]
grid:
  model: [./ckpts/works, ./ckpts/broken, ./ckpts/missing]
  seed: [0, 1]
verify: {verify}
"""


def _sweep_cmd(root: Path) -> list[str]:
    return CLI + ["sweep", str(root / "sweep.yaml"), "--out", str(root / "out")]


def _finished(out: Path) -> dict[str, Path]:
    cells = out / "cells"
    if not cells.is_dir():
        return {}
    return {d.name: d for d in cells.iterdir()
            if (d / "cell.json").is_file() and ((d / "results.json").is_file() or (d / "error.json").is_file())}


def _done_so_far(out: Path) -> int:
    try:
        return json.loads((out / "sweep.json").read_text())["counts"]["done"]
    except (OSError, ValueError, KeyError):
        return 0


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """The sweep folder after: a run stopped by SIGTERM, a resume, and a rerun (their outputs)."""
    root = tmp_path_factory.mktemp("sweep")
    save_silenced(root / "ckpts" / "works", layers=(0, 1))
    save_silenced(root / "ckpts" / "broken", layers=(2,))
    write_late_hypothesis(root / "late.yaml", root / "ckpts" / "works")
    (root / "sweep.yaml").write_text(SWEEP.format(verify=json.dumps(CHEAP)))
    out = root / "out"

    t0 = time.perf_counter()
    first = subprocess.Popen(_sweep_cmd(root), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    # Stop it once a cell has really run on Ray (the missing model's cells fail before Ray
    # starts), as sweep.json, which follows the sweep, shows.
    while not _done_so_far(out) and time.time() < deadline and first.poll() is None:
        time.sleep(0.1)
    first.send_signal(signal.SIGTERM)
    interrupted_log, _ = first.communicate(timeout=120)
    kept = {name: (d, {p.name: p.stat().st_mtime_ns for p in d.iterdir()}) for name, d in _finished(out).items()}
    tables = json.loads((out / "sweep.json").read_text())
    t1 = time.perf_counter()
    resumed = subprocess.run(_sweep_cmd(root), capture_output=True, text=True, timeout=300)
    start = time.perf_counter()
    rerun = subprocess.run(_sweep_cmd(root), capture_output=True, text=True, timeout=300)
    print(f"interrupted run {t1 - t0:.1f} s, resume {start - t1:.1f} s, rerun {time.perf_counter() - start:.1f} s")
    return {"root": root, "out": out, "first": (first.returncode, interrupted_log, tables), "kept": kept,
            "resumed": resumed, "rerun": rerun, "rerun_s": time.perf_counter() - start}


def test_interrupted_sweep_keeps_what_finished(swept):
    code, log, data = swept["first"]
    assert code == 130, log
    assert "interrupted" in log and "Traceback" not in log
    assert 1 <= len(swept["kept"]) < 6, log
    assert any((d / "results.json").exists() for d, _ in swept["kept"].values())
    assert data["counts"]["pending"] == 6 - len(swept["kept"])  # the tables are written on the way out
    assert sum(1 for c in data["cells"] if c["status"] == "pending") == 6 - len(swept["kept"])


def test_resume_runs_only_what_is_missing_and_the_rerun_nothing(swept):
    resumed, rerun = swept["resumed"], swept["rerun"]
    n_kept = len(swept["kept"])
    assert resumed.returncode == 1, resumed.stderr  # the broken and missing cells fail
    assert f"{n_kept} already recorded, {6 - n_kept} to run" in resumed.stderr, resumed.stderr
    for name, (folder, mtimes) in swept["kept"].items():
        assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == mtimes, name
    assert rerun.returncode == 1
    assert "6 already recorded, 0 to run" in rerun.stderr, rerun.stderr
    assert "running" not in rerun.stderr
    assert swept["rerun_s"] < 15  # no Ray, no model: reads six cells and redraws the report


def _rows(out: Path) -> dict[tuple[str, int], dict[str, str]]:
    with (out / "sweep.csv").open() as fh:
        return {(r["model"], int(r["seed"])): r for r in csv.DictReader(fh)}


def test_rows_report_every_cell_and_the_bad_one_with_its_error(swept):
    rows = _rows(swept["out"])
    assert set(rows) == {(m, s) for m in ("works", "broken", "missing") for s in (0, 1)}
    for seed in (0, 1):
        assert rows[("works", seed)]["status"] == "done" and rows[("works", seed)]["passed"] == "True"
        assert rows[("works", seed)]["edge late->logits@END verdict"] == "verified"
        assert float(rows[("works", seed)]["edge late->logits@END"]) == pytest.approx(-1.0, abs=1e-5)
        assert rows[("broken", seed)]["edge late->logits@END verdict"] == "refuted"
        assert float(rows[("broken", seed)]["edge late->logits@END"]) == pytest.approx(0.0, abs=1e-6)
        bad = rows[("missing", seed)]
        assert bad["status"] == "failed" and bad["error_kind"] == "input"
        assert "missing" in bad["error"] and "does not exist" in bad["error"]
    for key in ("faithfulness", "faithfulness low", "faithfulness high", "completeness verdict"):
        assert key in rows[("works", 0)]
    data = json.loads((swept["out"] / "sweep.json").read_text())
    assert data["counts"] | {} == data["counts"] and data["counts"]["done"] == 4
    assert data["counts"]["failed"] == 2 and data["counts"]["passed"] == 2


def _assert_same(a, b, where: str) -> None:
    """Equal up to float noise (a Ray worker runs its own thread count, so sums can round
    differently in the last bits). Reasons quote numbers and are skipped; so is the work
    count of the worst-case searches, whose path follows near ties."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert set(a) == set(b), where
        for k in a:
            if k in ("completeness", "minimality") and isinstance(a[k], dict):
                # Which K the worst-case search settles on is a near tie here; its value and
                # verdict must still agree.
                assert a[k]["verdict"] == b[k]["verdict"], f"{where}.{k}"
                assert a[k]["value"] == pytest.approx(b[k]["value"], abs=1e-5), f"{where}.{k}"
            elif k not in ("work", "reason"):
                _assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float | int) and isinstance(b, float | int) and not isinstance(a, bool):
        # (ints too: a prompt count derived from an interval's width can round either way)
        assert a == pytest.approx(b, rel=1e-4, abs=1e-6), where
    else:
        assert a == b, where


def test_rows_equal_separate_verify_runs(swept, tmp_path):
    root, out = swept["root"], swept["out"]
    rows = _rows(out)
    for model in ("works", "broken"):
        hyp = write_late_hypothesis(tmp_path / f"{model}.yaml", root / "ckpts" / model)
        for seed in (0, 1):
            alone = json.loads(cs.verify(hyp, seed=seed, **CHEAP).dumps())
            row = rows[(model, seed)]
            cell = json.loads((out / "cells" / row["cell"] / "results.json").read_text())
            for d in (alone, cell):
                d.pop("timings"), d["hypothesis"].pop("path")
            _assert_same(cell, alone, f"{model}/{seed}")
            assert row["passed"] == str(alone["passed"])
            assert float(row["faithfulness"]) == pytest.approx(alone["circuit"]["faithfulness"]["value"], rel=1e-5)


def test_a_worker_loads_its_model_once(swept):
    loads: dict[tuple[str, str], list[float]] = {}
    for folder in (swept["out"] / "cells").iterdir():
        meta = json.loads((folder / "cell.json").read_text())
        if (folder / "results.json").exists():
            loads.setdefault((meta["inputs"]["model"]["ref"], meta["worker"]), []).append(meta["model_load_s"])
    assert loads
    for group in loads.values():
        assert sum(1 for s in group if s > 0) == 1, loads


def test_report_and_diff_of_two_cells(swept):
    out = swept["out"]
    md = (out / "sweep.md").read_text()
    for picture in ("scores_by_model.png", "scores_by_seed.png", "verdicts.png"):
        assert (out / picture).stat().st_size > 1000 and f"({picture})" in md
    html = (out / "sweep.html").read_text()
    assert html.count("data:image/png;base64,") == 3 and 'src="http' not in html
    rows = _rows(out)
    works, broken = (out / "cells" / rows[(m, 0)]["cell"] for m in ("works", "broken"))
    worse = subprocess.run(CLI + ["diff", str(works), str(broken)], capture_output=True, text=True)
    assert worse.returncode == 1, worse.stdout + worse.stderr
    assert "verified -> refuted" in worse.stdout


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks a machine without a GPU")
def test_cells_that_cannot_run_fail_in_their_rows_without_starting_ray(tmp_path):
    import ray

    from circuitspec.sweep.runner import run_sweep
    from circuitspec.sweep.spec import load_sweep

    save_silenced(tmp_path / "ckpts" / "works", layers=(0, 1))
    write_late_hypothesis(tmp_path / "late.yaml", tmp_path / "ckpts" / "works")
    (tmp_path / "sweep.yaml").write_text(
        "name: nowhere\nhypotheses: [late.yaml]\n"
        "grid: {model: [./ckpts/works, ./ckpts/gone], device: [cuda]}\n")
    run = run_sweep(load_sweep(tmp_path / "sweep.yaml"), tmp_path / "out", log=lambda line: None)
    assert not ray.is_initialized()
    errors = {s.cell.model_label: (s.status, s.error_kind, s.error) for s in run.states}
    assert errors["works"][:2] == ("failed", "runtime") and "needs 1 GPU(s)" in errors["works"][2]
    assert errors["gone"][:2] == ("failed", "input") and "does not exist" in errors["gone"][2]
    assert json.loads((tmp_path / "out" / "sweep.json").read_text())["counts"]["failed"] == 2
