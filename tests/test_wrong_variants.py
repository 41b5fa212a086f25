"""Wrong variants of the shipped SmolLM2 hypothesis fail `circuitspec verify` (exit 1).

Two variants of hypotheses/ioi_smollm2_135m.yaml, each wrong in one place:

- swapped: the induction group's heads replaced by layer-matched random heads outside the
  circuit (same layers, fixed draw);
- rewired: the previous-token heads wired into the S-inhibition heads' keys instead of the
  induction heads' keys.

Each must exit 1, and the altered edge itself must be the one that is not verified (so the
test cannot pass merely because a small run fails everything). Small N keeps it cheap.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from circuitspec.cli import main

SHIPPED = Path(__file__).resolve().parent.parent / "hypotheses" / "ioi_smollm2_135m.yaml"
FAST = ["--n-prompts", "8", "--n-bootstrap", "50", "--n-random", "0", "--n-null-edges", "0", "--no-robustness"]


def _variant(tmp_path: Path, name: str, change) -> Path:
    yaml = YAML()
    doc = yaml.load(SHIPPED.read_text())
    change(doc)
    path = tmp_path / f"{name}.yaml"
    with path.open("w") as f:
        yaml.dump(doc, f)
    return path


def _swap_induction(doc) -> None:
    used = {h for node in doc["nodes"].values() for h in node["heads"]}
    rng = random.Random(0)
    heads = []
    for label in doc["nodes"]["induction"]["heads"]:
        layer = label.split("H")[0]
        heads.append(rng.choice([f"{layer}H{h}" for h in range(9) if f"{layer}H{h}" not in used]))
    doc["nodes"]["induction"]["heads"] = heads


def _rewire_previous(doc) -> None:
    for edge in doc["edges"]:
        if edge["from"] == "previous":
            edge["to"] = "s_inhibition"


def _verify(path: Path, monkeypatch, capsys) -> tuple[int, dict]:
    monkeypatch.setattr(sys, "argv", ["circuitspec", "verify", str(path), "--json", *FAST])
    with pytest.raises(SystemExit) as exited:
        main()
    return exited.value.code, json.loads(capsys.readouterr().out)


@pytest.mark.real
@pytest.mark.parametrize(("name", "change", "edge"), [
    ("swapped", _swap_induction, ("induction", "s_inhibition")),
    ("rewired", _rewire_previous, ("previous", "s_inhibition")),
])
def test_wrong_variant_exits_1_on_the_altered_edge(name, change, edge, tmp_path, monkeypatch, capsys):
    code, result = _verify(_variant(tmp_path, name, change), monkeypatch, capsys)
    assert code == 1
    altered = [e for e in result["edges"] if (e["from"], e["to"]) == edge]
    assert altered and altered[0]["verdict"] != "verified", altered
    assert not result["passed"]
