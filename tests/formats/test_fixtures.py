"""Circuit files written from each tool's documented layout (tests/fixtures/formats, made by
make_fixtures.py without circuitspec) import, validate and, on tiny GPT-2, verify unedited."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.paths import FIXTURES

import circuitspec as cs
from circuitspec.formats.convert import import_file
from circuitspec.spec.load import load_hypothesis
from circuitspec.verification.validate import check_file

FILES = {"eap-ig": "eap_ig.json", "mib-pt": "mib.pt", "acdc": "acdc_edges.pkl",
         "auto-circuit": "auto_circuit.json"}
# auto-circuit's file holds scores only, so the circuit is chosen by score; the others mark it.
SELECT = {"eap-ig": {}, "mib-pt": {}, "acdc": {}, "auto-circuit": {"threshold": 0.015}}

# What each fixture's circuit must become, worked out from the layouts: every head-to-head,
# MLP-to-head and to-logits edge kept at END (no positions in the files), the edge into an
# MLP and the edge from the input dropped.
EXPECTED = {
    "smollm2": {
        ("L23H3", "logits", None), ("L29H1", "logits", None), ("L29H0", "logits", None),
        ("L20H0", "L23H3", "q"), ("L19H2", "L23H3", "q"), ("L17H4", "L20H0", "v"),
        ("L8H1", "L20H0", "v"), ("L16H0", "L17H4", "k"), ("MLP22", "L23H3", "q"),
    },
    "tiny_gpt2": {
        ("L2H1", "logits", None), ("L2H3", "logits", None), ("L1H0", "L2H1", "q"),
        ("L0H2", "L1H0", "v"), ("MLP0", "L1H0", "k"),
    },
}


def edges(path: Path) -> set[tuple]:
    hyp = load_hypothesis(path)
    assert {e.at for e in hyp.edges} == {"END"}
    one = {name: spec.heads[0] for name, spec in hyp.nodes.items()}
    assert all(len(spec.heads) == 1 for spec in hyp.nodes.values())
    return {(one[e.sender], "logits" if e.receiver == "logits" else one[e.receiver], e.via)
            for e in hyp.edges}


@pytest.mark.parametrize("fmt", sorted(FILES))
def test_smollm2_fixture_imports_and_validates(tmp_path, fmt):
    out, notes = import_file(FIXTURES / f"smollm2_{FILES[fmt]}", fmt, "smollm2-135m-instruct",
                             tmp_path / "h.yaml", **SELECT[fmt])
    assert edges(out) == EXPECTED["smollm2"]
    check_file(str(out))  # what `circuitspec validate` runs; raises on any problem
    lines = "\n".join(n.line() for n in notes)
    assert "lost [1]: edges into MLPs dropped" in lines
    assert "lost [1]: edges from the input embedding dropped" in lines
    assert "9 query heads over 3 key/value heads" in lines  # the v and k edges, unfolded
    if fmt == "acdc":
        assert "lost [4]: ACDC's direct-computation edges" in lines  # 4 head inputs used


@pytest.mark.parametrize("fmt", sorted(FILES))
def test_tiny_gpt2_fixture_imports_validates_and_verifies(tmp_path, tiny_model_dirs, fmt):
    model = str(tiny_model_dirs["gpt2"])
    out, _ = import_file(FIXTURES / f"tiny_gpt2_{FILES[fmt]}", fmt, model, tmp_path / "h.yaml",
                         n_prompts=8, **SELECT[fmt])
    assert edges(out) == EXPECTED["tiny_gpt2"]
    check_file(str(out))
    result = cs.verify(out, n_random=5, n_null_edges=0, n_bootstrap=100, robustness=False)
    assert len(result.edges) == 5 and all(e.effect is not None for e in result.edges)
    assert result.circuit is not None
