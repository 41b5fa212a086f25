"""Calibration: how often "verified" goes to a circuit known by construction, and to near misses.

The model is :mod:`planted_ioi` (a tiny Llama whose IOI circuit is planted in its weights:
A -> B.v at END -> logits carries 60 % of the logit difference, N -> logits 40 %; the
other heads are active distractors writing where nothing reads; small noise on every
weight). For each seed (distractor and noise weights, and which near miss is drawn) the
faithfulness claim (band 0.8-1.2, judged at edge level, mean ablation from a separate
pool, template-cluster bootstrap: verify's defaults) is judged for

- the true hypothesis: it must never be refuted, and be verified in at least 4 of 5 seeds;
- a group swapped for layer-matched distractor heads;
- the true heads with wrong wiring (A feeds N, or B's q or k, instead of B's v);
- a missing edge;
- A -> B.v placed at S2 instead of END (the signal only flows at END).

No near miss may be verified (the false-positive rate is what "verified" has to keep
at zero); each is refuted in at least 4 of the 5 seeds (a 40 % path swapped for
distractors leaves F near 0.6, whose interval can reach the band: inconclusive, not a
pass). The claim is judged with the same functions ``verify``
calls (edge-level faithfulness, then the band), sharing one ablation runner per seed so
the five hypotheses cost one mean pool; one end-to-end ``verify`` per outcome ties it to
the exit status. The measured rates are in docs/semantics.md ("Calibration").
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from helpers.planted_ioi import save_planted

import circuitspec as cs
from circuitspec.ablation.edge import wires_from_circuit
from circuitspec.ablation.mean_pool import build_mean_pool
from circuitspec.ablation.node import AblationRunner
from circuitspec.bridge.loading import load_model
from circuitspec.data.tasks import hypothesis_dataset
from circuitspec.scoring.faithfulness import edge_faithfulness
from circuitspec.scoring.stats import band_verdict
from circuitspec.spec.load import load_hypothesis
from circuitspec.verification.settings import Options, bootstrap_clusters, resolve

SEEDS = (0, 1, 2, 3, 4)
# 16 templates: 8 BABA and their ABBA mirrors, so 8 template-pair clusters. With 4 pairs the
# bootstrap used to fall back to prompts (an interval covering 73 % under template effects);
# 4 widened clusters are honest but too wide for 24 prompts (true circuit verified 3 of 5).
TEMPLATES = [0, 1, 2, 3, 4, 5, 6, 7, 15, 16, 17, 18, 19, 20, 21, 22]
GROUPS = {"a": [(0, 0), (0, 1)], "n": [(1, 0), (1, 1)], "b": [(2, 0), (2, 1)]}
TRUE_EDGES = [("a", "b", "v", "END"), ("b", "logits", None, "END"), ("n", "logits", None, "END")]


def write(path: Path, model: Path, groups: dict, edges: list) -> Path:
    nodes = "\n".join(f"  {g}: {{role: other, heads: [{', '.join(f'L{L}H{h}' for L, h in heads)}]}}"
                      for g, heads in groups.items())
    lines = "\n".join(
        f"  - {{from: {s}, to: {r}{'' if via is None else f', via: {via}'}, at: {at}}}" for s, r, via, at in edges)
    path.write_text(f"name: planted-{path.stem}\nmodel: {model}\n"
                    f"task: {{kind: ioi, n_prompts: 24, seed: 1, corruption: abc, templates: {TEMPLATES}}}\n"
                    f"nodes:\n{nodes}\nedges:\n{lines}\n")
    return path


def near_misses(seed: int) -> dict[str, tuple[dict, list]]:
    """One near miss of each kind, the variant drawn by ``seed``."""
    rng = random.Random(seed)
    group = rng.choice(sorted(GROUPS))
    layer = GROUPS[group][0][0]
    swapped = dict(GROUPS) | {group: [(layer, h) for h in sorted(rng.sample(range(2, 8), 2))]}
    rewired = [rng.choice([("a", "n", "v", "END"), ("a", "b", "q", "END"), ("a", "b", "k", "END")])]
    missing = list(TRUE_EDGES)
    missing.pop(rng.randrange(len(missing)))
    return {"swapped group": (swapped, TRUE_EDGES), "wrong wiring": (GROUPS, rewired + TRUE_EDGES[1:]),
            "missing edge": (GROUPS, missing), "wrong position": (GROUPS, [("a", "b", "v", "S2")] + TRUE_EDGES[1:])}


def judge(tmp: Path, seed: int) -> dict[str, tuple[str, float]]:
    """The faithfulness verdict and value of the true hypothesis and each near miss."""
    model_dir = save_planted(tmp / f"planted{seed}", seed=seed, noise=0.01)
    model = load_model(str(model_dir))
    variants = {"true": (GROUPS, TRUE_EDGES)} | near_misses(seed)
    hyps = {name: load_hypothesis(write(tmp / f"{name.replace(' ', '_')}{seed}.yaml", model_dir, *v))
            for name, v in variants.items()}
    first = hyps["true"]
    dataset = hypothesis_dataset(first, model.tokenizer, default_prepend_bos=model.info.default_prepend_bos)
    pool = build_mean_pool(model, dataset, generate=True, seed=1 + 7919, per_template_min=20)
    runner = AblationRunner(model, dataset, "mean", mean_pool=pool)
    out = {}
    for name, hyp in hyps.items():
        at = resolve(hyp, Options()).edge_positions == "at"  # as verify resolves it
        wires = wires_from_circuit(hyp.circuit(), at_positions=at)
        clusters = bootstrap_clusters(dataset, "template", "ioi")[0]  # as verify resamples
        score = edge_faithfulness(runner, wires, n_bootstrap=500, seed=1, clusters=clusters)
        out[name] = (band_verdict(score.ci, 0.8, 1.2)[0], score.value)
    return out


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("calibration")
    return {seed: judge(tmp, seed) for seed in SEEDS}


def test_the_planted_circuit_is_verified_and_every_near_miss_refuted(verdicts):
    rates: dict[str, list[str]] = {}
    for by_name in verdicts.values():
        for name, (word, _) in by_name.items():
            rates.setdefault(name, []).append(word)
    print({name: (words.count("verified"), words.count("refuted"), len(words)) for name, words in rates.items()})
    print(verdicts)
    # The true circuit: never refuted, verified in at least 4 of 5 seeds (measured: 4; seed 4's
    # model barely does the task on these templates, F(M) near 0, so its ratio is wild).
    assert "refuted" not in rates["true"] and rates["true"].count("verified") >= len(SEEDS) - 1, verdicts
    for name in ("swapped group", "wrong wiring", "missing edge", "wrong position"):
        assert "verified" not in rates[name], (name, verdicts)
        assert rates[name].count("refuted") >= len(SEEDS) - 1, (name, verdicts)


def test_verify_passes_the_planted_circuit_and_fails_a_wrong_position(tmp_path):
    model_dir = save_planted(tmp_path / "planted", seed=0, noise=0.01)
    cheap = {"robustness": False, "n_random": 0, "n_random_edge": 0, "n_null_edges": 20, "n_subsets": 2,
             "greedy_steps": 1, "n_bootstrap": 200, "mean_pool_min": 20}
    true = cs.verify(write(tmp_path / "true.yaml", model_dir, GROUPS, TRUE_EDGES), **cheap)
    assert true.passed, true.circuit
    wrong = cs.verify(write(tmp_path / "at_s2.yaml", model_dir, GROUPS, [("a", "b", "v", "S2")] + TRUE_EDGES[1:]),
                      **cheap)
    assert not wrong.passed
    assert wrong.circuit.faithfulness_edge_level.verdict == "refuted"
