"""docs/formats.md's examples are files, and the end-to-end example runs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.paths import ROOT

from circuitspec.formats.mapping import load_role_map
from circuitspec.results import Result
from circuitspec.spec.load import load_hypothesis

DOC = ROOT / "docs" / "formats.md"
EXAMPLES = ROOT / "docs" / "examples" / "formats"


def test_every_example_the_page_names_exists():
    named = set(re.findall(r"docs/examples/formats/[\w.]+|examples/formats/[\w.]+", DOC.read_text()))
    assert named
    for path in named:
        assert (ROOT / (path if path.startswith("docs/") else f"docs/{path}")).exists(), path


def test_the_role_map_on_the_page_is_the_example_file():
    roles = load_role_map(EXAMPLES / "roles.yaml")
    assert roles["name_movers"].heads == ["L23H3", "L29H1", "L23H7", "L23H0", "L23H2"]
    assert roles["s_inhibition"].at == {"v": "S2"}
    text = DOC.read_text()
    for line in (EXAMPLES / "roles.yaml").read_text().splitlines():
        if not line.startswith("#"):
            assert line in text, line


def test_the_commands_on_the_page_are_the_script():
    script = (EXAMPLES / "end_to_end.sh").read_text()
    for step in ("score_eap_ig.py", "circuitspec import", "circuitspec validate",
                 "circuitspec verify", "circuitspec export"):
        assert step in script and step in DOC.read_text()
    for flag in ("--top-k 7", "--roles docs/examples/formats/roles.yaml", "--n-random 5"):
        assert flag in script and flag in DOC.read_text()


@pytest.mark.real
@pytest.mark.slow
def test_end_to_end_example_runs(tmp_path):
    """The script on SmolLM2: scores -> EAP-IG JSON -> hypothesis -> verify -> EAP-IG JSON."""
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
           "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    run = subprocess.run(["sh", str(EXAMPLES / "end_to_end.sh"), str(tmp_path)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    hyp = load_hypothesis(tmp_path / "imported.yaml")
    assert hyp.nodes["name_movers"].role == "name_mover"
    assert "L23H3" in hyp.nodes["name_movers"].heads  # the strongest head into the logits
    result = Result.load(tmp_path / "run" / "results.json")
    verified = {e.sender for e in result.edges if e.verdict == "verified"}
    assert "name_movers" in verified
    exported = json.loads((tmp_path / "verified.json").read_text())
    assert exported["cfg"] == {"n_layers": 30, "n_heads": 9, "parallel_attn_mlp": False,
                               "d_model": 576}
    members = {g: [f"a{h[1:].replace('H', '.h')}" for h in spec.heads] for g, spec in hyp.nodes.items()}
    want = {f"{a}->logits" for g in verified for a in members[g]}
    assert {k for k, v in exported["edges"].items() if v["in_graph"]} == want
