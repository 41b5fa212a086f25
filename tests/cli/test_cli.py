"""The command line as a new user meets it: usage errors, out-of-range numbers,
unreadable files, piped output and progress lines in a log."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from helpers.cli import cli

from circuitspec.data.tasks import build_dataset
from circuitspec.errors import CircuitSpecError, InputFileError, TaskError
from circuitspec.output.console import stage_lines
from circuitspec.spec.textfile import read_text
from circuitspec.verification.limits import LIMITS
from circuitspec.verification.settings import Options

HYP = "hypotheses/ioi_smollm2_135m.yaml"


USAGE = [
    (["frobnicate"], "No such command 'frobnicate'"),
    (["verify"], "Missing argument 'hypothesis'"),
    (["render"], "Missing argument"),
    (["verify", HYP, "--n-random", "abc"], "'--n-random'"),
    (["verify", HYP, "--frob"], "No such option: --frob"),
    (["verify", HYP, "--n-prompts", "0"], "'--n-prompts': 0 is outside the accepted range: at least 1"),
    (["verify", HYP, "--n-prompts", "-3"], "'--n-prompts': -3 is outside the accepted range: at least 1"),
    (["verify", HYP, "--seed", "-1"], "'--seed': -1 is outside the accepted range: between 0 and 4294967295"),
    (["verify", HYP, "--n-bootstrap", "5"], "'--n-bootstrap': 5 is outside the accepted range: between 10"),
    (["verify", HYP, "--n-random", "10001"], "'--n-random': 10001 is outside the accepted range"),
    (["verify", HYP, "--n-null-edges", "-1"], "'--n-null-edges': -1 is outside"),
    (["verify", HYP, "--n-random-edge", "-2"], "'--n-random-edge': -2 is outside"),
    (["explore", "--n-prompts", "0"], "'--n-prompts': 0 is outside"),
    (["explore", "--patch-prompts", "0"], "'--patch-prompts': 0 is outside"),
    (["suggest", "--confirm", "0"], "'--confirm': 0 is outside"),
    (["suggest", "--seed", "x"], "'--seed'"),
]


@pytest.mark.parametrize(("args", "message"), USAGE, ids=[" ".join(a[:1] + a[2:]) for a, _ in USAGE])
def test_usage_errors_are_one_message_and_exit_2(args: list[str], message: str):
    proc = cli(*args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert message in proc.stderr, proc.stderr
    assert re.match(r"Usage: circuitspec", proc.stderr), proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 5, proc.stderr


def test_options_check_applies_the_same_ranges_to_python_callers():
    Options(n_prompts=1, seed=0, n_bootstrap=10).check()
    with pytest.raises(CircuitSpecError, match="n_prompts must be at least 1, not 0"):
        Options(n_prompts=0).check()
    with pytest.raises(CircuitSpecError, match=r"seed must be between 0 and \d+, not -1"):
        Options(seed=-1).check()
    with pytest.raises(CircuitSpecError, match="n_bootstrap .* not 9"):
        Options(n_bootstrap=9).check()
    assert set(LIMITS) >= {"n_prompts", "seed", "n_bootstrap", "n_random", "n_null_edges"}


def test_verify_rejects_zero_prompts_before_loading_anything():
    from circuitspec.verification.run import verify

    with pytest.raises(CircuitSpecError, match="n_prompts"):
        verify("no/such/file.yaml", n_prompts=0)


@pytest.mark.parametrize("n", [0, -3])
def test_zero_prompts_is_not_read_as_unset(n: int):
    from circuitspec.spec.schema import TaskSpec

    with pytest.raises(TaskError, match=f"n_prompts must be at least 1, not {n}"):
        build_dataset(TaskSpec(kind="ioi"), None, prepend_bos=False, n_prompts=n)


def _unreadable(tmp: Path) -> dict[str, tuple[Path, str]]:
    binary = tmp / "binary.yaml"
    binary.write_bytes(b"name: x\n\x00\x01\x02")
    latin = tmp / "latin1.yaml"
    latin.write_bytes("name: caf\xe9\n".encode("latin-1"))
    empty = tmp / "empty.yaml"
    empty.write_text("  \n")
    folder = tmp / "folder.yaml"
    folder.mkdir()
    return {
        "binary": (binary, "binary data"),
        "latin1": (latin, "not UTF-8 text"),
        "empty": (empty, "empty"),
        "folder": (folder, "is a folder"),
        "missing": (tmp / "missing.yaml", "no such"),
    }


@pytest.mark.parametrize("case", ["binary", "latin1", "empty", "folder", "missing"])
@pytest.mark.parametrize("command", ["validate", "render", "verify"])
def test_unreadable_input_files_exit_2_naming_the_file(tmp_path: Path, case: str, command: str):
    path, why = _unreadable(tmp_path)[case]
    if command == "render":
        target = path.with_suffix(".json") if case != "folder" else path
        if case in ("binary", "latin1", "empty"):
            target.write_bytes(path.read_bytes())
        args = ["render", str(target), "-o", str(tmp_path / "out.svg")]
    else:
        args = [command, str(path)] + (["--out", str(tmp_path / "out")] if command == "verify" else [])
    proc = cli(*args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert path.stem in proc.stderr and why in proc.stderr, proc.stderr
    assert not (tmp_path / "out.svg").exists() and not (tmp_path / "out").exists()


def test_read_text_names_permission_problems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "h.yaml"
    path.write_text("name: x\n")

    def denied(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(InputFileError, match=r"h\.yaml: cannot read the hypothesis file: permission denied"):
        read_text(path, "hypothesis file")


def test_read_text_locates_the_bad_byte_and_drops_a_bom(tmp_path: Path):
    path = tmp_path / "p.jsonl"
    path.write_bytes(b'{"a": 1}\n{"b": "\xff"}\n')
    with pytest.raises(InputFileError) as info:
        read_text(path, "prompts file")
    assert info.value.line == 2 and "byte 0xff at offset 16" in str(info.value)
    path.write_bytes("\ufeffname: x\n".encode())
    assert read_text(path) == "name: x\n"


def test_piped_models_keeps_aliases_whole():
    proc = cli("models")  # stdout is a pipe here, as in `circuitspec models | cat`
    assert proc.returncode == 0, proc.stderr
    assert "smollm2-135m-instruct" in proc.stdout
    assert "HuggingFaceTB/SmolLM2-135M-Instruct" in proc.stdout
    assert "…" not in proc.stdout


def test_stage_lines_print_each_stage_once_with_elapsed_time():
    out = io.StringIO()
    update = stage_lines(out)
    update("loading model", 0, 1)
    update("edge a -> b", 0, 2)
    update("edge a -> b", 0, 2)
    update("edge b -> logits", 1, 2)
    update("edges", 2, 2)
    lines = out.getvalue().splitlines()
    assert len(lines) == 4
    assert re.fullmatch(r"\[\s*\d+\.\ds\] loading model", lines[0])
    assert lines[1].endswith("edge a -> b (1/2)") and lines[2].endswith("edge b -> logits (2/2)")
    assert lines[3].endswith("] edges")
