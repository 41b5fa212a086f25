"""The bad-input corpus (tests/bad_inputs/cases.yaml): every entry point, every case
exits 2 with the file, line, field or option named, no traceback, and nothing written.

The command line runs in this process (``main()`` with ``sys.argv`` set) so that the
61 cases share one interpreter start; tests/cli/test_cli.py runs it as a subprocess.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from helpers.paths import TESTS
from ruamel.yaml import YAML

from circuitspec.cli import main

HERE = TESTS / "bad_inputs"
CASES = YAML(typ="safe", pure=True).load((HERE / "cases.yaml").read_text())


def test_the_corpus_covers_every_entry_point():
    commands = {case["args"][0] for case in CASES}
    assert {"validate", "verify", "render", "explore", "suggest", "fetch"} <= commands
    assert len(CASES) >= 50
    assert len({case["id"] for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_bad_input_exits_2_with_a_located_message(
    case: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    out = tmp_path / "out"
    args = [a.replace("{out}", str(out)) for a in case["args"]]
    monkeypatch.chdir(HERE)
    monkeypatch.setattr(sys, "argv", ["circuitspec", *args])
    with pytest.raises(SystemExit) as exited:
        main()  # an exception other than SystemExit (a traceback for a user) fails the test
    captured = capsys.readouterr()
    message = captured.err
    assert exited.value.code == 2, captured.out + message
    assert "Traceback" not in message + captured.out
    for text in case["expect"]:
        assert text in message, message
    if case.get("usage"):
        assert message.startswith("Usage: circuitspec"), message
    else:
        assert "\nerror: " in "\n" + message, message
    assert not list(tmp_path.iterdir()), f"{case['id']} wrote {list(tmp_path.iterdir())}"
