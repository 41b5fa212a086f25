"""Wrong variants of the shipped SmolLM2 hypothesis fail `circuitspec verify` (exit 1), and
fail for the reason they are wrong: their edge-level faithfulness, not the file's.

Two variants of hypotheses/ioi_smollm2_135m.yaml, each wrong in one way:

- swapped: one group's heads replaced by layer-matched random heads (for each member a
  head of the same layer that is in no group; a fixed draw);
- rewired: the same heads, but every edge into a group of heads moved one stage
  downstream (into the name movers goes into the negative name mover, into S-inhibition
  goes into the name movers, into induction goes into S-inhibition), keeping its sender,
  input (q, k or v) and position.

The three files (shipped, swapped, rewired) run through the CLI with the same cheap
settings: 32 of the file's held-out prompts, `--quick` (edges and faithfulness only), no
per-edge nulls (so no edge can be verified, and a quick run never exits 0) and the
smallest mean pool that can verify. The exit code alone therefore cannot tell them apart;
what does is the claim a wrong wiring breaks. Faithfulness is judged at edge level (the
file's ablation_level): each variant's interval must lie outside the file's band (refuted),
the shipped file's value inside it and its interval not outside it, and the shipped file's
value must exceed each variant's by more than either interval's width.

Measured on the re-grown file (8 edges, seed 2; 4 min for the three runs on a loaded 2-core
machine): shipped 0.998 [0.736, 1.165] (inconclusive: at 32 prompts, as at the file's 128,
its interval reaches below 0.8), induction swapped 0.405 [0.238, 0.549], rewired 0.217
[0.062, 0.361], both refuted. At 16 prompts the shipped interval was [0.565, 1.336], too
wide to separate them, hence 32. The previous file (9 edges, seed 1) gave, at 16: shipped
1.009 [0.895, 1.147] verified, swapped 0.561, rewired 0.317.
Node-level faithfulness cannot tell the rewired file from the shipped one (same heads),
which is why the claim is judged at edge level.

Why the previous draft of this test was withdrawn (last session): it was never run; with
`--n-null-edges 0` every edge is inconclusive, so "the altered edge is not verified" held
for any file, right or wrong; and the shipped file itself exited 1 on held-out prompts, so
"exit 1" distinguished nothing. Here the shipped file runs beside the variants and the
assertion is on a number that differs between them.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers.paths import SHIPPED
from ruamel.yaml import YAML

from circuitspec.cli import main

CHEAP = ["--quick", "--n-prompts", "32", "--n-null-edges", "0", "--n-bootstrap", "200", "--mean-pool-min", "20"]
N_HEADS = 9  # SmolLM2-135M: query heads per layer
DOWNSTREAM = {"name_movers": "negative_name_movers", "s_inhibition": "name_movers", "induction": "s_inhibition"}


def _write(tmp_path: Path, name: str, doc: Any) -> Path:
    path = tmp_path / f"{name}.yaml"
    with path.open("w") as f:
        YAML().dump(doc, f)
    return path


def swap_group(doc: Any, group: str, seed: int = 0) -> None:
    """Replace ``group``'s heads by random heads of the same layers that are in no group."""
    used = {h for node in doc["nodes"].values() for h in node["heads"]}
    rng = random.Random(seed)
    heads = []
    for label in doc["nodes"][group]["heads"]:
        layer = label.split("H")[0]
        free = [f"{layer}H{h}" for h in range(N_HEADS) if f"{layer}H{h}" not in used | set(heads)]
        heads.append(rng.choice(free))
    doc["nodes"][group]["heads"] = heads


def rewire(doc: Any) -> int:
    """Move every edge into a group of heads one stage downstream; return how many moved."""
    moved = 0
    for edge in doc["edges"]:
        if edge["to"] in DOWNSTREAM:
            edge["to"] = DOWNSTREAM[edge["to"]]
            moved += 1
    return moved


def verify_json(path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:
    monkeypatch.setattr(sys, "argv", ["circuitspec", "verify", str(path), "--json", *CHEAP])
    with pytest.raises(SystemExit) as exited:
        main()
    return exited.value.code, json.loads(capsys.readouterr().out)


def test_swap_and_rewire_change_the_file_as_described():
    doc = YAML().load(SHIPPED.read_text())
    before = {g: list(n["heads"]) for g, n in doc["nodes"].items()}
    swap_group(doc, "induction")
    after = doc["nodes"]["induction"]["heads"]
    assert [h.split("H")[0] for h in after] == [h.split("H")[0] for h in before["induction"]]
    assert not set(after) & {h for heads in before.values() for h in heads}
    doc = YAML().load(SHIPPED.read_text())
    edges = [dict(e) for e in doc["edges"]]
    assert rewire(doc) >= 5
    assert sorted(h for n in doc["nodes"].values() for h in n["heads"]) == sorted(h for hs in before.values() for h in hs)
    assert not {(e["from"], e["to"], e.get("via")) for e in doc["edges"] if e["to"] != "logits"} & {
        (e["from"], e["to"], e.get("via")) for e in edges}


@pytest.mark.real
@pytest.mark.slow
def test_wrong_variants_exit_1_and_lose_edge_level_faithfulness(tmp_path, monkeypatch, capsys, smollm2):
    # One loaded model for the three CLI runs: the same prompts reuse its path-patching caches.
    # Patched where verify() looks it up (verification.run imports the name), and counted, so
    # a later move of that import fails here instead of quietly loading SmolLM2 three times.
    loads = []
    monkeypatch.setattr("circuitspec.verification.run.load_model", lambda ref, **kw: loads.append(ref) or smollm2)
    yaml = YAML()
    swapped, rewired = yaml.load(SHIPPED.read_text()), yaml.load(SHIPPED.read_text())
    swap_group(swapped, "induction")
    rewire(rewired)
    runs = {"shipped": verify_json(SHIPPED, monkeypatch, capsys)}
    for name, doc in (("swapped", swapped), ("rewired", rewired)):
        runs[name] = verify_json(_write(tmp_path, name, doc), monkeypatch, capsys)
    assert loads == ["smollm2-135m-instruct"] * 3
    scores = {name: result["circuit"]["faithfulness_edge_level"] for name, (_, result) in runs.items()}
    print({name: (s["value"], s["ci"], s["verdict"]) for name, s in scores.items()})
    for _, result in runs.values():
        assert result["settings"]["ablation_level"] == "edge" and result["held_out"] is True
    true = scores["shipped"]
    for name in ("swapped", "rewired"):
        code, result = runs[name]
        assert code == 1 and not result["passed"]
        wrong = scores[name]
        band = swapped["claims"]["faithfulness"]
        lo, hi = band["min"], band["max"]
        assert true["verdict"] != "refuted" and lo <= true["value"] <= hi, true
        assert wrong["verdict"] == "refuted" and not lo <= wrong["value"] <= hi, wrong
        widest = max(true["ci"][1] - true["ci"][0], wrong["ci"][1] - wrong["ci"][0])
        assert true["value"] - wrong["value"] > widest, (name, true, wrong)
