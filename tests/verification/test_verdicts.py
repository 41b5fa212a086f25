"""Verdicts a reviewer would sign (issue 15): wiring-aware faithfulness, a separate mean pool,
per-prompt values that recompute every reported number."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from helpers.cli import CLI
from helpers.hypotheses import COMPLETE_EDGES, LAYER_GROUPS, write_complete_hypothesis

import circuitspec as cs

HYPOTHESIS = """name: wiring
model: {model}
task: {{kind: ioi, n_prompts: 24, seed: 0, corruption: abc}}
""" + LAYER_GROUPS + """edges:
{edges}
edge_positions: every
claims:
  faithfulness: {{min: 0.9}}
  edges: {{min_effect: 0.0, sign: any}}
"""
# Every head of the tiny model is in the circuit, so node-level faithfulness is exactly 1
# whatever the edges. The complete graph among the groups is the model itself at edge level
# too (F = F(M)) when the edges carry signal at every position (edge_positions: every; at END
# only, the default, it is not); a sparse wiring of the same heads is not.
RIGHT = COMPLETE_EDGES
WRONG = ["  - {from: l0, to: l1, via: q, at: END}", "  - {from: l1, to: l2, via: q, at: END}",
         "  - {from: l2, to: logits, at: END}"]
QUICK = {"n_random": 0, "n_random_edge": 0, "n_null_edges": 0, "n_bootstrap": 300, "robustness": False, "per_head": False}


def _write(path: Path, model_dir: Path, edges: list[str]) -> Path:
    path.write_text(HYPOTHESIS.format(model=model_dir, edges="\n".join(edges)))
    return path


def _claim_failed(data: dict, name: str) -> bool:
    score = data["circuit"][name]
    return score["verdict"] is not None and score["verdict"] != "verified"


def test_faithfulness_is_judged_at_edge_level_when_edges_join_groups(tmp_path, tiny_model_dirs):
    model_dir = tiny_model_dirs["llama"]
    right = cs.verify(_write(tmp_path / "right.yaml", model_dir, RIGHT), **QUICK)
    assert right.settings.ablation_level == "edge"
    edge = right.circuit.faithfulness_edge_level
    assert edge.value == pytest.approx(1.0, abs=1e-5) and edge.verdict == "verified"
    assert right.circuit.faithfulness.verdict is None  # node level reported beside it
    assert "judged at edge level" in right.circuit.faithfulness.reason

    wrong_path = _write(tmp_path / "wrong.yaml", model_dir, WRONG)
    wrong = cs.verify(wrong_path, **QUICK)
    # Same heads: node level cannot see the wiring and is unchanged...
    assert wrong.circuit.faithfulness.value == pytest.approx(right.circuit.faithfulness.value, abs=1e-9)
    # ...edge level can, and the claim no longer holds.
    assert abs(wrong.circuit.faithfulness_edge_level.value - 1.0) > 0.5
    assert wrong.circuit.faithfulness_edge_level.verdict != "verified"
    assert "claim faithfulness_edge_level" in [f.what for f in wrong.failures()]
    assert not wrong.passed

    run = subprocess.run([*CLI, "verify", str(wrong_path), "--json", "--n-random", "0",
                          "--n-null-edges", "0", "--n-bootstrap", "300", "--no-robustness"],
                         capture_output=True, text=True)
    assert run.returncode == 1, run.stderr
    data = json.loads(run.stdout)
    assert data["settings"]["ablation_level"] == "edge"
    assert _claim_failed(data, "faithfulness_edge_level") and not data["passed"]
    # Node level stays selectable, and there the same file's faithfulness claim holds.
    node = cs.verify(wrong_path, ablation_level="node", **QUICK)
    assert node.settings.ablation_level == "node"
    assert node.circuit.faithfulness.verdict == "verified"
    assert node.circuit.faithfulness_edge_level.verdict is None


def test_logits_only_hypothesis_is_judged_at_node_level(tmp_path, tiny_model_dirs):
    edges = [f"  - {{from: {a}, to: logits, at: END}}" for a in ("l0", "l1", "l2")]
    hyp = cs.load_hypothesis(_write(tmp_path / "h.yaml", tiny_model_dirs["llama"], edges))
    assert hyp.judged_level() == "node"  # no edge between groups: no wiring to test
    explicit = hyp.model_copy(update={"ablation_level": "edge"})
    assert explicit.judged_level() == "edge"


# --- mean ablation from a separate pool ---------------------------------------------------


def _ioi(model, n: int, seed: int = 0):
    from circuitspec.data.ioi import build_ioi

    return build_ioi(model.tokenizer, n_prompts=n, seed=seed, corruption="abc", prepend_bos=False)


CIRCUIT = [(0, 1), (1, 0), (1, 3), (2, 2)]


def test_mean_pool_is_separate_large_and_independent_of_n_prompts(tiny_models):
    from circuitspec.ablation.mean_pool import build_mean_pool
    from circuitspec.ablation.node import AblationRunner

    model = tiny_models["llama"]
    k = 12
    small, large = _ioi(model, k), _ioi(model, 2 * k)
    assert large.clean[:k] == small.clean[:k]  # the generator is prefix-stable
    pools = [build_mean_pool(model, ds, generate=True, seed=99, per_template_min=30) for ds in (small, large)]
    for pool, ds in zip(pools, (small, large), strict=True):
        # One mean per token layout: length and the index of every named position.
        layouts = {(len(ds.clean[i]), *(ds.positions[n][i] for n in sorted(ds.positions))) for i in range(len(ds))}
        assert {(k[0], *(at for _, at in k[1])) for k in pool.counts} == layouts
        assert min(pool.counts.values()) >= 30 and pool.sufficient and pool.disjoint
        info = pool.info()
        assert info["n"] == pool.n and info["seed"] == 99 and info["per_template_min"] == 30
    values = [AblationRunner(model, ds, "mean", mean_pool=pool).logit_diff(CIRCUIT)
              for ds, pool in zip((small, large), pools, strict=True)]
    # The first K prompts score the same whether K or 2K prompts are scored.
    # (batch composition changes the float summation order, hence the tolerance)
    assert values[1][:k].tolist() == pytest.approx(values[0].tolist(), abs=1e-5)
    # The in-sample means of before moved with N on the very same prompts (the test has teeth).
    old = [AblationRunner(model, ds, "mean", in_sample=True).logit_diff(CIRCUIT) for ds in (small, large)]
    assert old[1][:k].tolist() != pytest.approx(old[0].tolist(), abs=1e-4)


def _layout(ds, i: int) -> tuple[int, ...]:
    return (len(ds.clean[i]), *(ds.positions[n][i] for n in sorted(ds.positions)))


def _slow_layout_mean(model, seed: int, layout: tuple[int, ...], k: int, layer: int):
    """Independent slow reference: the first k generated ABC prompts of ``layout``, each run
    alone, their z at ``layer`` averaged."""
    import torch

    from circuitspec.data.ioi import build_ioi

    gen = build_ioi(model.tokenizer, n_prompts=3000, seed=seed, corruption="abc", prepend_bos=False)
    rows = [gen.corrupt[i] for i in range(len(gen)) if _layout(gen, i) == layout][:k]
    assert len(rows) == k
    zs = []
    for toks in rows:
        _, cache = model.bridge.run_with_cache(torch.tensor([toks]))
        zs.append(cache[f"blocks.{layer}.attn.hook_z"][0])
    return torch.stack(zs).mean(0)


def test_pool_mean_is_the_average_over_its_own_prompts(tiny_models):
    import torch

    from circuitspec.ablation.mean_pool import build_mean_pool, layout_key

    model = tiny_models["llama"]
    ds = _ioi(model, 6)
    pool = build_mean_pool(model, ds, generate=True, seed=5, per_template_min=20)
    ref = _slow_layout_mean(model, 5, _layout(ds, 0), 20, layer=1)
    torch.testing.assert_close(pool.mean_for(layout_key(ds, 0))[0][1], ref, atol=1e-5, rtol=0)


def test_a_pool_started_from_another_runs_pool_equals_one_built_from_nothing(tiny_models):
    """The robustness panel's regenerated (S-swap) prompts start from the run's own pool: the
    layouts they share are not run again, and the result equals a pool built for them alone.
    A pool of another seed is not reused, and a reused mean must still be held out."""
    import torch

    from circuitspec.ablation.mean_pool import build_mean_pool
    from circuitspec.bridge.work import Work
    from circuitspec.data.ioi import build_ioi
    from circuitspec.errors import TaskError

    model = tiny_models["llama"]
    ds = build_ioi(model.tokenizer, n_prompts=8, seed=3, corruption="abc", prepend_bos=False, templates=[0, 13])
    # S-swap pairs each prompt with its mirror template's (IO and S1 swap places): 2 more layouts.
    other = build_ioi(model.tokenizer, n_prompts=8, seed=3, corruption="s_swap", prepend_bos=False,
                      templates=[0, 13])
    pool = build_mean_pool(model, ds, generate=True, seed=5, per_template_min=20)
    alone, started = Work(per_forward=1), Work(per_forward=1)
    own = build_mean_pool(model, other, generate=True, seed=5, per_template_min=20, work=alone)
    got = build_mean_pool(model, other, generate=True, seed=5, per_template_min=20, work=started,
                          start_from=pool)
    assert len(pool.means) == 2 and len(own.means) == 4
    assert got.counts == own.counts and got.prompts == own.prompts and got.info() == own.info()
    for key, (zs, mlps) in own.means.items():
        for a, b in zip(zs + mlps, got.means[key][0] + got.means[key][1], strict=True):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    assert started.total == pytest.approx(alone.total / 2)  # the two shared layouts were not rerun
    other_seed = Work(per_forward=1)
    build_mean_pool(model, other, generate=True, seed=6, per_template_min=20, work=other_seed, start_from=pool)
    assert other_seed.total == pytest.approx(alone.total)
    key = next(iter(pool.prompts))
    leaked = type(ds)(ds.clean, (pool.prompts[key][0], *ds.corrupt[1:]), ds.correct, ds.incorrect,
                      ds.positions, ds.template, ds.prepend_bos)
    with pytest.raises(TaskError, match="equal a scored prompt"):
        build_mean_pool(model, leaked, generate=True, seed=5, per_template_min=20, start_from=pool)


def test_templates_of_one_length_with_names_elsewhere_get_their_own_means(tiny_models):
    """Templates 0 and 13 are both 15 word tokens, S2 at index 10 and 11: a mean per length
    would average the S2 name of one with a function word of the other at each index."""
    import torch

    from circuitspec.ablation.mean_pool import build_mean_pool
    from circuitspec.ablation.node import AblationRunner
    from circuitspec.data.ioi import build_ioi

    model = tiny_models["llama"]
    ds = build_ioi(model.tokenizer, n_prompts=8, seed=3, corruption="abc", prepend_bos=False, templates=[0, 13])
    first = {t: ds.template.index(t) for t in (0, 13)}
    assert len(ds.clean[first[0]]) == len(ds.clean[first[13]])
    assert ds.positions["S2"][first[0]] != ds.positions["S2"][first[13]]
    pool = build_mean_pool(model, ds, generate=True, seed=5, per_template_min=20)
    runner = AblationRunner(model, ds, "mean", mean_pool=pool)
    for i in first.values():
        ref = _slow_layout_mean(model, 5, _layout(ds, i), 20, layer=1)
        torch.testing.assert_close(runner.z_replacement(i, 1), ref, atol=1e-5, rtol=0)
    assert pool.info()["n_means"] == 2 and pool.info()["key"] == "layout"


def test_a_too_small_pool_cannot_verify_a_mean_claim(tmp_path, tiny_model_dirs):
    path = _write(tmp_path / "h.yaml", tiny_model_dirs["llama"], RIGHT)
    ok = cs.verify(path, **QUICK)
    pool = ok.settings.mean_pool
    assert pool["sufficient"] and pool["n"] >= 50 and pool["per_template_min"] == 50
    assert pool["seed"] is not None and pool["seed"] != ok.task.seed and pool["disjoint"]
    assert ok.circuit.faithfulness_edge_level.verdict == "verified"
    small = cs.verify(path, mean_pool_min=5, **QUICK)
    assert not small.settings.mean_pool["sufficient"]
    score = small.circuit.faithfulness_edge_level
    assert score.value == pytest.approx(1.0, abs=1e-5)  # the complete graph is the model anyway
    assert score.verdict == "inconclusive" and "pool is insufficient" in score.reason
    assert not small.passed
    data = json.loads(small.dumps())
    assert data["settings"]["mean_pool"]["sufficient"] is False


# --- per-prompt values ----------------------------------------------------------------------


def test_every_reported_number_recomputes_from_the_per_prompt_values(tmp_path, tiny_model_dirs):
    import numpy as np

    from circuitspec.results import Result
    from circuitspec.scoring.stats import bootstrap_ratio_ci

    path = _write(tmp_path / "h.yaml", tiny_model_dirs["llama"], WRONG)
    result = cs.verify(path, n_random=0, n_null_edges=0, n_bootstrap=300, robustness=False)
    data = json.loads(result.dumps())
    pp = data["metric"]["per_prompt"]
    clean, corrupt = np.array(pp["clean"]), np.array(pp["corrupt"])
    assert len(clean) == len(corrupt) == len(pp["template"]) == data["task"]["n_prompts"] == 24
    assert all(isinstance(t, int) for t in pp["template"])
    assert data["metric"]["clean"] == pytest.approx(clean.mean()) and data["metric"]["corrupt"] == pytest.approx(corrupt.mean())
    for edge in data["edges"]:
        patched = np.array(edge["per_prompt"])
        assert edge["metric_patched"] == pytest.approx(patched.mean())
        effect = (patched.mean() - clean.mean()) / (clean.mean() - corrupt.mean())
        assert edge["effect"] == pytest.approx(effect, rel=1e-9, abs=1e-12)
    for level in ("faithfulness", "faithfulness_edge_level"):
        score = data["circuit"][level]
        fc, fm = np.array(score["per_prompt"]["circuit"]), np.array(score["per_prompt"]["model"])
        assert score["value"] == pytest.approx(fc.mean() / fm.mean(), rel=1e-9)
        assert fm.tolist() == pytest.approx(clean.tolist(), abs=1e-4)  # F(M) is the clean run
        order = np.array(pp["template"]) < 15  # BABA templates are 0-14, their ABBA mirrors 15-29
        split = score["details"]["by_order"]
        assert split["BABA"]["n"] == order.sum() and split["ABBA"]["n"] == (~order).sum()
        assert split["BABA"]["value"] == pytest.approx(fc[order].mean() / fm[order].mean(), rel=1e-9)
        assert split["ABBA"]["value"] == pytest.approx(fc[~order].mean() / fm[~order].mean(), rel=1e-9)
        assert score["details"]["mean_of_per_prompt_ratios"] == pytest.approx(np.mean(fc / fm), rel=1e-9)
        n_boot = data["settings"]["n_bootstrap"]
        assert data["settings"]["bootstrap_unit"] == "template"  # templates resampled as clusters
        stats = data["settings"]["statistics"]  # the seed and level are in the file, not guessed
        assert stats["cluster"] == "template mod 15"  # a template and its mirror are one cluster
        assert stats["n_clusters"] == len({t % 15 for t in pp["template"]}) and "widened" in stats["interval"]
        assert score["ci"] == pytest.approx(list(bootstrap_ratio_ci(
            fc, fm, n_resamples=n_boot, seed=stats["seed"], level=stats["level"],
            clusters=[t % 15 for t in pp["template"]])))
        power = score["details"]["power"]
        half = (score["ci"][1] - score["ci"][0]) / 2
        assert power["half_width"] == pytest.approx(half) and power["n_prompts"] == 24
        assert power["n_prompts_needed"] == int(np.ceil(24 * (half / 0.1) ** 2))
        assert "lower bound" in power["n_prompts_needed_is"]  # clusters: more prompts shrink it less
    # Every score with per-prompt values, split by order, recomputes from them too.
    faith = data["breakdown"]["by_order"]["faithfulness (edge level)"]
    fc, fm = (np.array(data["circuit"]["faithfulness_edge_level"]["per_prompt"][k]) for k in ("circuit", "model"))
    order = np.array(pp["template"]) < 15
    assert faith["ABBA"]["value"] == pytest.approx(fc[~order].mean() / fm[~order].mean(), rel=1e-9)
    # The per-prompt values survive a round trip through the file.
    again = Result.from_json(data)
    assert again.edges[0].per_prompt == pytest.approx(tuple(data["edges"][0]["per_prompt"]))
    assert again.circuit.faithfulness.per_prompt["circuit"] == pytest.approx(
        data["circuit"]["faithfulness"]["per_prompt"]["circuit"])
    assert json.loads(again.dumps()) == data
    # The file validates against the published results schema, which names the new fields.
    import jsonschema

    from circuitspec.results_schema import results_json_schema

    schema = results_json_schema()
    jsonschema.validate(data, schema)
    props = schema["properties"]
    assert {"held_out", "metric", "settings"} <= set(props)
    assert "mean_pool" in props["settings"]["properties"] and "per_prompt" in props["metric"]["properties"]
    broken = json.loads(json.dumps(data))
    broken["settings"]["ablation_level"] = "sideways"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


# --- two-sided claims -------------------------------------------------------------------------


def test_band_verdict_by_hand():
    from circuitspec.scoring.stats import band_verdict

    assert band_verdict((0.85, 1.1), 0.8, 1.2)[0] == "verified"
    assert band_verdict((1.25, 1.4), 0.8, 1.2)[0] == "refuted"  # overshoots
    assert "overshoots" in band_verdict((1.25, 1.4), 0.8, 1.2)[1]
    assert band_verdict((0.5, 0.7), 0.8, 1.2)[0] == "refuted"
    assert band_verdict((1.1, 1.3), 0.8, 1.2)[0] == "inconclusive"
    assert band_verdict((0.7, 1.3), 0.8, 1.2)[0] == "inconclusive"
    assert band_verdict((1.5, 1.7), 0.8, None)[0] == "verified"  # one-sided on request


def test_default_upper_end_mirrors_the_lower_one():
    from circuitspec.spec.schema import Bound

    assert Bound(min=0.8).band == pytest.approx((0.8, 1.2))
    assert Bound(min=0.8, max=1.1).band == (0.8, 1.1)
    # min >= 1 has no mirrored upper end: it must be given (it used to become one-sided).
    with pytest.raises(ValueError, match="no default max"):
        Bound(min=1.0)
    assert Bound(min=1.0, max=float("inf")).band == (1.0, float("inf"))
    with pytest.raises(ValueError, match="larger than min"):
        Bound(min=0.9, max=0.8)


def test_an_overshooting_circuit_fails_a_two_sided_claim(tmp_path, tiny_model_dirs):
    import numpy as np

    # The complete graph gives faithfulness exactly 1: above a band that ends at 0.9.
    path = _write(tmp_path / "h.yaml", tiny_model_dirs["llama"], RIGHT)
    path.write_text(path.read_text().replace("faithfulness: {min: 0.9}", "faithfulness: {min: 0.5, max: 0.9}"))
    over = cs.verify(path, **QUICK)
    score = over.circuit.faithfulness_edge_level
    assert score.value == pytest.approx(1.0, abs=1e-5)
    assert score.verdict == "refuted" and "overshoots" in score.reason and not over.passed
    assert score.details["band"] == [0.5, 0.9]
    # Normalised faithfulness beside it, recomputed from the per-prompt values in the file.
    data = json.loads(over.dumps())
    for level in ("faithfulness", "faithfulness_edge_level"):
        s = data["circuit"][level]
        fc, fm, fe = (np.array(s["per_prompt"][k]) for k in ("circuit", "model", "empty"))
        norm = s["details"]["normalised"]
        assert norm["value"] == pytest.approx((fc.mean() - fe.mean()) / (fm.mean() - fe.mean()), rel=1e-9)
        assert norm["ci"][0] <= norm["value"] <= norm["ci"][1]
        assert fe.mean() == pytest.approx(data["circuit"]["f_empty"], rel=1e-6)
    # A one-sided file {min: 0.5} gets the mirrored upper end 1.5, which 1.0 lies within.
    path.write_text(path.read_text().replace("{min: 0.5, max: 0.9}", "{min: 0.5}"))
    ok = cs.verify(path, **QUICK)
    assert ok.circuit.faithfulness_edge_level.verdict == "verified"
    assert ok.circuit.faithfulness_edge_level.details["band"] == [0.5, 1.5]


# --- held out by construction --------------------------------------------------------------


def _with_discovery(path: Path, *, task_seed: int, templates: str = "") -> Path:
    text = path.read_text().replace("seed: 0, corruption: abc}", f"seed: {task_seed}, corruption: abc{templates}}}")
    path.write_text(text + "discovery: {seed: 0, n_prompts: 16}\n")
    return path


def test_an_in_sample_run_cannot_pass_without_in_sample(tmp_path, tiny_model_dirs):
    model_dir = tiny_model_dirs["llama"]
    quick = QUICK | {"n_prompts": 12}
    # Same seed as discovery: the generator is prefix-stable, so these are discovery prompts.
    same = _with_discovery(_write(tmp_path / "same.yaml", model_dir, RIGHT), task_seed=0)
    result = cs.verify(same, **quick)
    assert result.circuit.faithfulness_edge_level.verdict == "verified"  # every claim holds...
    assert result.held_out is False and result.held_out_info["overlap"] == 12
    assert not result.passed  # ...but in-sample
    assert result.failures()[0].what == "held-out prompts" and "in-sample" in result.failures()[0].reason
    data = json.loads(result.dumps())
    assert data["held_out"] is False and data["passed"] is False
    allowed = cs.verify(same, in_sample=True, **quick)
    assert allowed.held_out is False and allowed.held_out_info["in_sample"]
    assert "held-out prompts" not in [f.what for f in allowed.failures()]
    run = subprocess.run([*CLI, "verify", str(same), "--json", "--n-prompts", "12", "--n-random", "0",
                          "--n-null-edges", "0", "--n-bootstrap", "300", "--no-robustness"],
                         capture_output=True, text=True)
    assert run.returncode == 1 and json.loads(run.stdout)["held_out"] is False, run.stderr
    # Another seed: disjoint from the discovery prompts.
    other = _with_discovery(_write(tmp_path / "other.yaml", model_dir, RIGHT), task_seed=1)
    held = cs.verify(other, **quick)
    assert held.held_out is True and held.held_out_info["overlap"] == 0
    assert "held-out prompts" not in [f.what for f in held.failures()]


def test_held_out_templates(tmp_path, tiny_model_dirs):
    from circuitspec.bridge.loading import load_model
    from circuitspec.data.held_out import held_out_status
    from circuitspec.data.tasks import hypothesis_dataset

    model = load_model(str(tiny_model_dirs["llama"]))
    path = _write(tmp_path / "h.yaml", tiny_model_dirs["llama"], RIGHT)
    path.write_text(path.read_text().replace("seed: 0, corruption: abc}", "seed: 3, corruption: abc, templates: [5, 20]}")
                    + "discovery: {seed: 0, n_prompts: 16, templates: [0, 1, 2, 15, 16, 17]}\n")
    hyp = cs.load_hypothesis(path)
    ds = hypothesis_dataset(hyp, model.tokenizer, default_prepend_bos=False)
    assert set(ds.template) == {5, 20}
    status = held_out_status(hyp, ds, model.tokenizer, in_sample=False)
    assert status.held_out is True and status.templates_disjoint is True
    # --held-out-templates overrides the file's templates; one shared template is not disjoint.
    ds2 = hypothesis_dataset(hyp, model.tokenizer, default_prepend_bos=False, templates=[1, 7])
    assert set(ds2.template) <= {1, 7}
    assert held_out_status(hyp, ds2, model.tokenizer, in_sample=False, templates=[1, 7]).templates_disjoint is False
    # A file without discovery cannot be checked: held_out is unknown, and does not block.
    plain = cs.load_hypothesis(_write(tmp_path / "plain.yaml", tiny_model_dirs["llama"], RIGHT))
    unknown = held_out_status(plain, ds, model.tokenizer, in_sample=False)
    assert unknown.held_out is None and not unknown.blocks
    bad = subprocess.run([*CLI, "verify", str(path), "--held-out-templates", "3,99"], capture_output=True, text=True)
    assert bad.returncode == 2 and "0-29" in bad.stderr + bad.stdout


def test_discovery_prompts_are_regenerated_with_the_discovery_corruption(tmp_path, tiny_models):
    """abc draws three extra names per prompt: one seed names other prompts under s_swap."""
    from circuitspec.data.held_out import held_out_status
    from circuitspec.data.ioi import build_ioi
    from circuitspec.errors import HypothesisError

    model = tiny_models["llama"]

    def gen(corruption: str, n: int):
        return build_ioi(model.tokenizer, n_prompts=n, seed=0, corruption=corruption, prepend_bos=False)

    for task_c, disc_c in (("s_swap", "abc"), ("abc", "s_swap")):
        path = tmp_path / f"{task_c}.yaml"
        text = HYPOTHESIS.format(model="m", edges="\n".join(RIGHT)).replace("corruption: abc", f"corruption: {task_c}")
        disc = "" if disc_c == "abc" else ", corruption: s_swap"  # abc is the default
        path.write_text(text + f"discovery: {{seed: 0, n_prompts: 16{disc}}}\n")
        hyp = cs.load_hypothesis(path)
        assert hyp.discovery is not None and hyp.discovery.corruption == disc_c
        ds = gen(task_c, 12)
        # What discovery really saw: the first 16 of seed 0 under its own corruption.
        shared = len(set(ds.clean_text) & set(gen(disc_c, 16).clean_text))
        assert shared < 12  # regenerating with the task's corruption finds all 12 "shared"
        status = held_out_status(hyp, ds, model.tokenizer, in_sample=False)
        assert status.overlap == shared and status.held_out is (shared == 0)
    # s_swap pairs prompts: an odd discovery count is refused with the file's line.
    path.write_text(path.read_text().replace("n_prompts: 16, corruption: s_swap", "n_prompts: 15, corruption: s_swap"))
    with pytest.raises(HypothesisError, match="even"):
        cs.load_hypothesis(path)


def test_a_discovery_record_naming_the_templates_used_still_finds_the_discovery_prompts(tmp_path, tiny_models):
    """`suggest --grow-edges` wrote `discovery.templates` as the templates its (unrestricted)
    prompts happened to use. Rebuilt with that restriction, seed 0 names other prompts, so a
    verify on the very discovery prompts was called held out (overlap 0). Such a record is
    ambiguous, and both draws are compared."""
    from circuitspec.data.held_out import held_out_status
    from circuitspec.data.ioi import build_ioi

    model = tiny_models["llama"]
    found = build_ioi(model.tokenizer, n_prompts=16, seed=0, corruption="abc", prepend_bos=False)
    used = sorted(set(found.template))
    rebuilt = build_ioi(model.tokenizer, n_prompts=16, seed=0, corruption="abc", prepend_bos=False, templates=used)
    assert not set(rebuilt.clean_text) & set(found.clean_text)  # the restricted draw names other prompts
    path = _write(tmp_path / "h.yaml", Path("m"), RIGHT)
    path.write_text(path.read_text() + f"discovery: {{seed: 0, n_prompts: 16, templates: {used}}}\n")
    hyp = cs.load_hypothesis(path)
    status = held_out_status(hyp, found, model.tokenizer, in_sample=False)  # verify on the discovery prompts
    assert status.overlap == 16 and status.held_out is False and status.blocks
    # A real restriction is still honoured: its own prompts are found, others are not in-sample.
    narrow = tmp_path / "narrow.yaml"
    narrow.write_text(_write(tmp_path / "n.yaml", Path("m"), RIGHT).read_text()
                      + "discovery: {seed: 0, n_prompts: 16, templates: [3, 18]}\n")
    hyp = cs.load_hypothesis(narrow)
    own = build_ioi(model.tokenizer, n_prompts=16, seed=0, corruption="abc", prepend_bos=False, templates=[3, 18])
    assert held_out_status(hyp, own, model.tokenizer, in_sample=False).overlap == 16
    assert held_out_status(hyp, found, model.tokenizer, in_sample=False).held_out is True


def test_own_prompts_with_generator_discovery_are_not_known_to_be_held_out(tmp_path, tiny_models):
    """discovery names IOI generator prompts; a kind: prompts task may have been explored on its
    own prompts, which the block cannot name: unknown (None), unless a prompt is shared."""
    from circuitspec.data.held_out import held_out_status
    from circuitspec.data.ioi import build_ioi

    model = tiny_models["llama"]
    path = tmp_path / "own.yaml"
    text = HYPOTHESIS.format(model="m", edges="\n".join(RIGHT))
    text = text.replace("{kind: ioi, n_prompts: 24, seed: 0, corruption: abc}", "{kind: prompts, builtin: notebook}")
    path.write_text(text + "discovery: {seed: 0, n_prompts: 16}\n")
    hyp = cs.load_hypothesis(path)
    assert hyp.task.kind == "prompts"
    own = build_ioi(model.tokenizer, n_prompts=8, seed=7, corruption="abc", prepend_bos=False)
    status = held_out_status(hyp, own, model.tokenizer, in_sample=False)
    assert status.held_out is None and status.overlap == 0 and not status.blocks
    assert "unknown" in status.reason and status.info()["held_out"] is None
    # A prompt the discovery block does name is shared: in-sample, whatever else is unknown.
    shared = build_ioi(model.tokenizer, n_prompts=4, seed=0, corruption="abc", prepend_bos=False)
    status = held_out_status(hyp, shared, model.tokenizer, in_sample=False)
    assert status.held_out is False and status.overlap == 4 and status.blocks


# --- no silent claims -----------------------------------------------------------------------


def test_unclaimed_scores_are_judged_against_stated_defaults(tmp_path, tiny_model_dirs):
    from circuitspec.output.report import render_markdown
    from circuitspec.spec.schema import DEFAULT_CLAIMS

    assert DEFAULT_CLAIMS["completeness"].max_gap == 0.15 and DEFAULT_CLAIMS["minimality"].min == 0.02
    path = _write(tmp_path / "h.yaml", tiny_model_dirs["llama"], RIGHT)
    result = cs.verify(path, **QUICK)
    c = result.circuit
    # The whole model is the circuit: the incompleteness gap is exactly 0, within the default.
    assert c.completeness.value == pytest.approx(0.0, abs=1e-9)
    assert c.completeness.verdict == "verified" and c.completeness.details["claim"] == "default"
    assert c.completeness.details["threshold"] == 0.15
    assert c.minimality.verdict is not None and c.minimality.details["claim"] == "default"
    assert c.faithfulness_edge_level.details["claim"] == "claimed"
    md = render_markdown(result)
    headline = md.splitlines()[2]
    assert "incompleteness gap 0.000 (post-selection): verified (default)" in headline
    assert f"minimality {c.minimality.value:.3f} (post-selection): {c.minimality.verdict} (default)" in headline
    assert "faithfulness (edge level) 1.000: verified (claimed)" in headline
    if c.minimality.verdict != "verified":  # a default claim counts like a written one
        assert not result.passed and "claim minimality" in [f.what for f in result.failures()]


def test_a_claim_is_off_only_when_the_file_says_so(tmp_path, tiny_model_dirs):
    from circuitspec.output.report import render_markdown

    path = _write(tmp_path / "h.yaml", tiny_model_dirs["llama"], RIGHT)
    path.write_text(path.read_text().replace("claims:\n", "claims:\n  minimality: off\n  completeness: off\n"))
    hyp = cs.load_hypothesis(path)
    assert hyp.claims.off == ["completeness", "minimality"]
    result = cs.verify(path, **QUICK)
    for name in ("completeness", "minimality"):
        score = getattr(result.circuit, name)
        assert score.verdict is None and score.details["claim"] == "off" and "turned off" in score.reason
    assert "claim minimality" not in [f.what for f in result.failures()]
    headline = render_markdown(result).splitlines()[2]
    assert "incompleteness gap 0.000 (post-selection): off;" in headline and "minimality" in headline


# --- honest intervals -------------------------------------------------------------------------


def test_cluster_bootstrap_resamples_whole_templates():
    import numpy as np

    from circuitspec.scoring.stats import bootstrap_ci, bootstrap_paired_ci

    values = np.array([1.0, 1.0, 1.0, 5.0])
    # Two clusters drawn with replacement: {0,0} -> mean 1, {1,1} -> 5, one of each -> 8/4 = 2.
    # Each pure draw has probability 1/4, so the 2.5 % and 97.5 % quantiles are 1 and 5.
    # (The interval reported is then widened for having only two clusters: test_stats.)
    raw = bootstrap_paired_ci([values], lambda x: x.mean(1), n_resamples=2000, seed=1, clusters=[0, 0, 0, 1])
    low, high = bootstrap_ci(values, n_resamples=2000, seed=1, clusters=[0, 0, 0, 1])
    assert low < 1.0 and high > 5.0 and raw == (low, high)
    seen = set()
    bootstrap_paired_ci([values], lambda x: seen.update(x.mean(1).tolist()) or x.mean(1),
                        n_resamples=200, seed=2, clusters=[0, 0, 0, 1])
    assert seen == {1.0, 2.0, 5.0}
    # The prompt bootstrap instead treats the three 1s as independent: other means appear.
    assert bootstrap_ci(values, n_resamples=2000, seed=1) != (1.0, 5.0)


def test_non_finite_resamples_make_the_interval_and_the_verdict_inconclusive():
    import numpy as np

    from circuitspec.scoring.faithfulness import ratio_score
    from circuitspec.scoring.stats import bootstrap_ratio_ci, nonfinite_resamples

    fc, fm = np.array([1.0, 1.0, 1.0]), np.array([0.0, 0.0, 3.0])
    # A resample of the two zero denominators only (probability 8/27) divides by zero.
    bad = nonfinite_resamples([fc, fm], lambda a, b: a.mean(1) / b.mean(1), n_resamples=1000, seed=0)
    assert 200 < bad < 400
    assert all(np.isnan(bootstrap_ratio_ci(fc, fm, n_resamples=1000, seed=0)))
    score = ratio_score(fc, fm, 0.8, "faithfulness", n_bootstrap=1000, seed=0, level=0.95)
    assert score.verdict == "inconclusive" and score.details["nonfinite_resamples"] == bad
    assert f"{bad} of 1000 resamples" in score.reason


def test_verify_resamples_templates_by_default_and_prompts_on_request(tmp_path, tiny_model_dirs):
    path = _write(tmp_path / "h.yaml", tiny_model_dirs["llama"], WRONG)
    by_template = cs.verify(path, **QUICK)
    by_prompt = cs.verify(path, bootstrap="prompt", **QUICK)
    assert by_template.settings.bootstrap_unit == "template" and by_prompt.settings.bootstrap_unit == "prompt"
    assert by_template.edges[0].effect == by_prompt.edges[0].effect
    assert by_template.edges[0].ci != by_prompt.edges[0].ci
    for result in (by_template, by_prompt):
        assert "post-selection" in result.circuit.completeness.reason
        assert result.circuit.minimality.details["post_selection"] is True


def test_robustness_rows_re_measure_with_intervals_and_verdicts(tmp_path, tiny_model_dirs):
    path = _write(tmp_path / "h.yaml", tiny_model_dirs["llama"], RIGHT)
    result = cs.verify(path, **(QUICK | {"robustness": True}))
    rows = {r.setting: r for r in result.robustness}
    for kind in ("mean", "resample", "zero"):
        for level in ("", "edge level, "):
            row = rows[f"{level}{kind} ablation, ratio of means"]
            assert row.ci is not None and row.verdict in ("verified", "refuted", "inconclusive")
            assert row.edge_effects == {}  # path patching does not ablate: nothing copied
    # The complete graph is the model under every ablation: verified in the 0.9-1.1 band.
    zero = rows["edge level, zero ablation, ratio of means"]
    assert zero.faithfulness == pytest.approx(1.0, abs=1e-5) and zero.verdict == "verified"
    data = json.loads(result.dumps())
    assert {"ci", "verdict"} <= set(data["robustness"][0])


def test_a_template_and_its_mirror_are_one_bootstrap_cluster():
    """BABA template t and its ABBA mirror t + 15 share every word but the pair's order;
    resampling them as independent clusters made intervals too narrow."""
    from types import SimpleNamespace

    from circuitspec.verification.settings import bootstrap_clusters

    templates = list(range(30))
    labels, unit = bootstrap_clusters(SimpleNamespace(template=templates), "template", "ioi")
    assert unit == "template" and labels == [t % 15 for t in templates]
    # Few pairs are still clusters (their interval is widened, test_stats); resampling their
    # prompts as independent covered 73 % with 4 pairs. One pair alone cannot be clustered.
    few, unit = bootstrap_clusters(SimpleNamespace(template=[0, 1, 2, 3, 15, 16, 17, 18]), "template", "ioi")
    assert unit == "template" and few == [0, 1, 2, 3, 0, 1, 2, 3]
    one, unit = bootstrap_clusters(SimpleNamespace(template=[4, 19, 4]), "template", "ioi")
    assert one is None and "only 1 template pair" in unit
    import numpy as np

    from circuitspec.scoring.stats import bootstrap_ci
    assert all(np.isnan(bootstrap_ci(np.arange(6.0), n_resamples=100, clusters=[7] * 6)))


class _TableRunner:
    """A stand-in ablation runner: per-prompt F(X) looked up by the set of heads kept."""

    def __init__(self, table, clean):
        import torch

        self.table, self.clean = table, torch.tensor(clean, dtype=torch.float64)
        self.all_heads = frozenset({(0, 0), (0, 1), (0, 2)})
        self.work = None

    def run(self, keeps):
        import torch

        return torch.tensor([self.table[k.heads] for k in keeps], dtype=torch.float64)


def test_completeness_is_verified_only_when_every_k_clears_the_bar():
    """The worst K (gap 0.12, no spread) clears the 0.15 bar; another K has a smaller point
    gap (0.10) but a wide interval reaching above it. Judged on the worst K's interval alone
    this was verified; the claim is about every K, so it is inconclusive."""
    import numpy as np

    from circuitspec.scoring.scores import completeness

    n = 24
    fm = np.full(n, 10.0)
    spread = 1.0 + 5.0 * (-1.0) ** np.arange(n)
    a, b, c = frozenset({(0, 0), (0, 1)}), frozenset({(0, 1)}), frozenset({(0, 0)})
    table = {a: fm, frozenset({(0, 0), (0, 1), (0, 2)}): fm,
             b: fm - 1.2, frozenset({(0, 1), (0, 2)}): fm,
             c: fm - spread, frozenset({(0, 0), (0, 2)}): fm}
    runner = _TableRunner(table, fm)
    groups = {"g1": [(0, 0)], "g2": [(0, 1)]}
    score = completeness(runner, groups, threshold=0.15, n_subsets=0, greedy_steps=0, n_bootstrap=400)
    assert score.value == pytest.approx(0.12)
    assert score.details["worst_k_name"] == "group:g1" and score.ci[1] <= 0.15
    assert score.verdict == "inconclusive" and "group:g2" in score.reason
    wide = next(k for k in score.details["searched"] if k["name"] == "group:g2")
    assert wide["ci"][1] > 0.15
    # With every K's interval under the bar it is verified.
    table[c] = fm - 1.0
    assert completeness(runner, groups, threshold=0.15, n_subsets=0, greedy_steps=0,
                        n_bootstrap=400).verdict == "verified"


def test_minimality_verified_needs_each_heads_interval_over_every_k_it_chose_from():
    """Each head's K is the one with the largest change on these prompts, so its plain 95 %
    interval is post-selection. Here head L0H0 matters under one K of the four tried (change
    0.028 of F(M)): its plain interval [0.021, 0.035] clears 0.02, its Bonferroni interval over
    the 4 K [0.019, 0.037] does not, so every head is not shown to matter: inconclusive. With a
    larger change (0.04) both clear and it is verified."""
    import numpy as np
    import torch

    from circuitspec.scoring.scores import minimality

    v, a, b = (0, 0), (0, 1), (0, 2)
    n = 40

    class FnRunner:
        def __init__(self, shift: float) -> None:
            self.clean = torch.full((n,), 10.0, dtype=torch.float64)
            self.work, self.shift = None, shift

        def run(self, keeps):
            rows = []
            for k in keeps:
                f = np.full(n, 10.0) - 2.0 * len({a, b} - set(k.heads))
                if set(k.heads) == {b}:  # removing v matters only once a is gone
                    f = f - self.shift + 0.23 * (-1.0) ** np.arange(n)
                rows.append(f)
            return torch.tensor(np.array(rows))

    groups = {"g": [v, a, b]}
    weak = minimality(FnRunner(0.28), groups, [[a], [b], [a, b]], threshold=0.02, n_bootstrap=2000)
    assert weak.details["per_head_n_k"]["L0H0"] == 4
    assert weak.details["per_head_ci"]["L0H0"][0] >= 0.02 > weak.details["per_head_ci_adjusted"]["L0H0"][0]
    assert weak.verdict == "inconclusive" and "Bonferroni" in weak.reason
    strong = minimality(FnRunner(0.40), groups, [[a], [b], [a, b]], threshold=0.02, n_bootstrap=2000)
    assert strong.verdict == "verified"


def test_completeness_every_k_includes_the_greedy_options_not_taken():
    """The greedy search measures every one-head K and takes the largest point gap ({L0H0},
    0.12, no spread). {L0H1} has a smaller point gap (0.10) but an interval reaching above the
    0.15 bar; it was measured, then left out of the every-K check, so the claim was verified."""
    import numpy as np
    import torch

    from circuitspec.scoring.scores import completeness

    n = 24
    h0, h1, h2, outside = (0, 0), (0, 1), (0, 2), (0, 3)
    spread = 1.0 + 5.0 * (-1.0) ** np.arange(n)

    class FnRunner:
        clean = torch.full((n,), 10.0, dtype=torch.float64)
        all_heads = frozenset({h0, h1, h2, outside})
        work = None

        def run(self, keeps):
            rows = []
            for k in keeps:
                removed = {h0, h1, h2} - set(k.heads)
                f = np.full(n, 10.0)
                if outside not in k.heads and removed == {h0}:
                    f = f - 1.2
                elif outside not in k.heads and removed == {h1}:
                    f = f - spread
                rows.append(f)
            return torch.tensor(np.array(rows))

    groups = {"g1": [h0, h1], "g2": [h2]}
    score = completeness(FnRunner(), groups, threshold=0.15, n_subsets=0, greedy_steps=1, n_bootstrap=400)
    assert score.details["worst_k"] == ["L0H0"] and score.value == pytest.approx(0.12)
    wide = next(k for k in score.details["searched"] if k["heads"] == ["L0H1"])
    assert wide["name"].startswith("greedy option") and wide["ci"][1] > 0.15
    assert score.verdict == "inconclusive" and "greedy option" in score.reason


def test_a_verified_faithfulness_without_a_circuit_null_says_why():
    """With no null drawn a verified faithfulness said nothing about it (finding 9). Asked for
    none, it keeps its verdict and says so (finding 13); asked for and not drawable (too few
    spare heads), it has no null to be judged against and is inconclusive, as an edge is
    (finding 11). Without ``n_asked`` (a caller that gates no null) it is left alone."""
    from circuitspec.scoring.faithfulness import Score
    from circuitspec.verification.claims import null_gate

    score = Score(1.0, (0.9, 1.1), "verified", "CI inside the band.")
    none = null_gate(score, None, 0.05, 0)
    assert none.verdict == "verified" and "(n_random=0)" in none.reason
    assert "(n_random_edge=0)" in null_gate(score, None, 0.05, 0, "n_random_edge").reason
    lacking = null_gate(score, None, 0.05, 100)
    assert lacking.verdict == "inconclusive"
    assert "no null to be judged against: n_random=100" in lacking.reason
    assert "too few heads outside the circuit" in lacking.reason
    assert "n_random_edge=20" in null_gate(score, None, 0.05, 20, "n_random_edge").reason
    assert null_gate(score, None, 0.05) == score
    refuted = Score(0.2, (0.1, 0.3), "refuted", "CI below the band.")
    assert null_gate(refuted, None, 0.05, 100) == refuted  # only a verified score is gated
    # A null too small to decide (10 draws all beaten: p = 1/11 > 0.05) says so, not that random
    # circuits came as close.
    from circuitspec.records.edges import NullDistribution

    small = null_gate(score, NullDistribution(0.1, 0.0, 0.2, 10, 1.0, 1.0, 1 / 11, "layer_matched"), 0.05, 10)
    assert small.verdict == "inconclusive" and "too small to decide at 0.05" in small.reason
    assert "come as close" not in small.reason


def test_verify_quick_gates_faithfulness_as_the_full_run_would():
    """``verify --quick`` draws no circuit null. Where the full run could not draw one either
    (too few spare heads) its faithfulness is inconclusive as there; where it could, a verified
    score says it was not tested; asked for none, it says that."""
    from circuitspec.scoring.faithfulness import Score
    from circuitspec.verification.claims import quick_null_gate

    score = Score(1.0, (0.9, 1.1), "verified", "CI inside the band.")
    drawable = quick_null_gate(score, 100, "n_random", feasible=True)
    assert drawable.verdict == "verified" and "verify --quick draws none" in drawable.reason
    lacking = quick_null_gate(score, 20, "n_random_edge", feasible=False)
    assert lacking.verdict == "inconclusive" and "no null to be judged against: n_random_edge=20" in lacking.reason
    asked_none = quick_null_gate(score, 0, "n_random", feasible=True)
    assert asked_none.verdict == "verified" and "(n_random=0)" in asked_none.reason
    refuted = Score(0.2, (0.1, 0.3), "refuted", "CI below the band.")
    assert quick_null_gate(refuted, 100, "n_random", feasible=True) == refuted


@pytest.mark.parametrize("level", ["node", "edge"])
def test_a_whole_model_circuit_asking_for_a_null_it_cannot_have_is_inconclusive(tmp_path, tiny_model_dirs,
                                                                                 tiny_models, level):
    """Finding 11. Every head of the tiny model is in the complete graph, so no layer-matched
    random circuit exists: the null asked for cannot be drawn. The faithfulness claim, whose
    interval [1, 1] lies in the band, stayed verified (with a sentence); it is inconclusive at
    the level it is judged, in a full run and under --quick, saying it has no null to be judged
    against. Asking for no null (0) keeps the verdict and its sentence (finding 13)."""
    hyp = write_complete_hypothesis(tmp_path / "h.yaml", tiny_model_dirs["llama"])
    name, option = {"node": ("faithfulness", "n_random"), "edge": ("faithfulness_edge_level", "n_random_edge")}[level]
    cheap = {"model": tiny_models["llama"], "ablation_level": level, "n_null_edges": 0, "n_bootstrap": 200,
             "per_head": False, "robustness": False, "n_subsets": 1, "greedy_steps": 0}
    for quick in (False, True):
        asked = cs.verify(hyp, quick=quick, n_random=20, n_random_edge=20, **cheap)
        score = getattr(asked.circuit, name)
        assert score.value == pytest.approx(1.0, abs=1e-5) and score.ci[0] >= 0.9, score
        assert score.verdict == "inconclusive", (quick, score.reason)
        assert f"no null to be judged against: {option}=20 random circuits were asked for" in score.reason
        assert f"claim {name}" in [f.what for f in asked.failures()] and not asked.passed
        none = cs.verify(hyp, quick=quick, n_random=0, n_random_edge=0, **cheap)
        score = getattr(none.circuit, name)
        assert score.verdict == "verified" and f"the run asked for none ({option}=0)" in score.reason, score.reason
        assert f"claim {name}" not in [f.what for f in none.failures()]


def test_completeness_whose_interval_lies_below_its_own_gap_is_inconclusive():
    """F(M) sums to 1/64 over eight prompts (1, 2, ..., 64 and -127 + 1/64; no other resample
    sums within about 1 of 0), and every C \\ K exceeds M \\ K by 0.001: each K's gap is
    0.001 / (1/512) = 0.512, while every resample but the sample's own gives at most
    0.001 / (1/8) = 0.008. The interval [0, 0.008] lay under the 0.15 bar, so a gap of 0.51 was
    "verified" at most 0.15; it is inconclusive, saying why."""
    import numpy as np

    from circuitspec.scoring.scores import completeness

    fm = np.array([1.0, 2, 4, 8, 16, 32, 64, -127 + 1 / 64])
    c_minus = {frozenset({(0, 0), (0, 1)}), frozenset({(0, 1)}), frozenset({(0, 0)})}
    m_minus = {frozenset({(0, 0), (0, 1), (0, 2)}), frozenset({(0, 1), (0, 2)}), frozenset({(0, 0), (0, 2)})}
    table = {k: fm + 0.001 for k in c_minus} | {k: fm for k in m_minus}
    groups = {"g1": [(0, 0)], "g2": [(0, 1)]}
    score = completeness(_TableRunner(table, fm), groups, threshold=0.15, n_subsets=0, greedy_steps=0,
                         n_bootstrap=400)
    assert score.value == pytest.approx(0.512) and score.ci[1] <= 0.15
    assert score.verdict == "inconclusive" and "excludes its own estimate 0.512" in score.reason


def test_a_gap_near_zero_below_its_folded_interval_still_verifies():
    """|a - b| resamples lie above a gap of 0 by construction (the absolute value folds them):
    that interval is not beside its estimate in the sense of a denominator near 0."""
    import numpy as np

    from circuitspec.scoring.scores import completeness

    n = 24
    fm = np.full(n, 10.0)
    spread = 0.3 * np.random.default_rng(0).normal(size=n)
    spread -= spread.mean()  # mean 0: the gap is 0, and no resample's is
    c = frozenset({(0, 0)})
    table = {frozenset({(0, 0), (0, 1)}): fm, frozenset({(0, 0), (0, 1), (0, 2)}): fm,
             frozenset({(0, 1)}): fm - 1.0, frozenset({(0, 1), (0, 2)}): fm,
             c: fm + spread, frozenset({(0, 0), (0, 2)}): fm}
    score = completeness(_TableRunner(table, fm), {"g1": [(0, 0)], "g2": [(0, 1)]}, threshold=0.15,
                         n_subsets=0, greedy_steps=0, n_bootstrap=400)
    folded = next(k for k in score.details["searched"] if k["name"] == "group:g2")
    assert folded["relative_gap"] == pytest.approx(0.0, abs=1e-12) and folded["ci"][0] > 0
    assert score.verdict == "verified"
