"""What the discovery prompts say about a file's completeness gap: two probes.

    .venv/bin/python docs/examples/completeness_probe.py hypotheses/ioi_smollm2_135m.yaml \
        [--backups 6] [--rounds 5]

Both run on the file's discovery prompts (``discovery:``; 32 IOI prompts of seed 0 when it
names no other), with verify's separate mean pool and its completeness search (the groups,
20 random K, 2 greedy steps), node level. Each line gives node-level F and the completeness
gap with a 95 % template-cluster interval (200 resamples; post-selection, in sample).

- ``--backups N``: the heads whose direct logit attribution rises most when the name movers
  are mean-ablated (the backup analysis of ``explore``), each added to the name movers
  alone, then the top 3 and all N together.
- ``--rounds R``: greedy augmentation. Each round takes the worst K of the current circuit and
  adds the head outside the circuit whose removal from M \\ K brings F(M \\ K) nearest to
  F(C \\ K); R rounds. It asks whether a few more heads close the gap.

Nothing here changes a file: a head found this way still needs a role, edges and a
held-out verify.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping
from typing import Any, cast

import torch

from circuitspec.ablation.mean_pool import build_mean_pool, pool_seed
from circuitspec.ablation.node import AblationRunner, Keep
from circuitspec.analyses.attribution import backup_name_movers
from circuitspec.bridge.loading import load_model
from circuitspec.data.ioi import build_ioi
from circuitspec.scoring.faithfulness import faithfulness
from circuitspec.scoring.scores import completeness
from circuitspec.spec.heads import format_head, parse_head
from circuitspec.spec.load import load_hypothesis


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("hypothesis")
    ap.add_argument("--backups", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=0)
    args = ap.parse_args()
    hyp = load_hypothesis(args.hypothesis)
    model = load_model(hyp.model_spec.name, revision=hyp.model_spec.revision)
    disc = hyp.discovery
    bos = hyp.prepend_bos if hyp.prepend_bos is not None else model.info.default_prepend_bos
    seed = disc.seed if disc else 0
    ds = build_ioi(model.tokenizer, n_prompts=disc.n_prompts if disc else 32, seed=seed,
                   corruption=disc.corruption if disc else "abc", prepend_bos=bos,
                   templates=disc.templates if disc else None)
    pool = build_mean_pool(model, ds, generate=True, seed=pool_seed(seed))
    runner = AblationRunner(model, ds, "mean", mean_pool=pool)
    groups: dict[str, list[tuple[int, int]]] = {
        k: [(int(h[0]), int(h[1])) for h in v.heads] for k, v in hyp.circuit().nodes.items()}

    def score(g: dict[str, list[tuple[int, int]]], label: str) -> Mapping[str, Any]:
        t = time.time()
        c = completeness(runner, g, threshold=0.15, n_bootstrap=200, seed=0, greedy_steps=2)
        f = faithfulness(runner, frozenset(h for hs in g.values() for h in hs), threshold=None,
                         n_bootstrap=200, seed=0)
        d, (low, high) = c.details, cast(tuple[float, float], c.ci)
        print(f"{label}: F node {f.value:.3f} | completeness {c.value:.3f} [{low:.3f}, {high:.3f}]; "
              f"worst K {','.join(d['worst_k'])}: F(C\\K) {d['f_circuit_minus_k']:.2f}, "
              f"F(M\\K) {d['f_model_minus_k']:.2f} ({time.time() - t:.0f} s)", flush=True)
        return d

    score(groups, "the file")
    n_heads = model.info.n_heads
    circuit = {h for hs in groups.values() for h in hs}
    if args.backups:
        grid = backup_name_movers(model, ds, groups["name_movers"])
        rise = grid.values[:, 1] - grid.values[:, 0]
        top = [divmod(i, n_heads) for i in torch.argsort(rise, descending=True).tolist()
               if divmod(i, n_heads) not in circuit][: args.backups]
        for h in top:
            i = h[0] * n_heads + h[1]
            score({**groups, "name_movers": groups["name_movers"] + [h]},
                  f"+ {format_head(h)} as a name mover (DLA {grid.values[i, 0]:+.3f} -> {grid.values[i, 1]:+.3f})")
        if len(top) > 3:
            score({**groups, "name_movers": groups["name_movers"] + top[:3]}, "+ the top 3")
        score({**groups, "name_movers": groups["name_movers"] + top}, f"+ all {len(top)}")
    extra: list[tuple[int, int]] = []
    for r in range(args.rounds):
        g = {**groups, "extra": extra}
        d = score(g, f"round {r}" + (f", added {[format_head(h) for h in extra]}" if extra else ""))
        worst = frozenset(parse_head(s) for s in d["worst_k"])
        inside = {h for hs in g.values() for h in hs}
        outside = [h for h in sorted(runner.all_heads) if h not in inside]
        target = d["f_circuit_minus_k"]
        base = runner.run([Keep.of(runner.all_heads - worst)])[0].double().mean().item()
        values = runner.run([Keep.of(runner.all_heads - worst - {h}) for h in outside]).double().mean(1)
        best = min(zip(outside, values.tolist(), strict=True), key=lambda hv: abs(hv[1] - target))
        print(f"   adds {format_head(best[0])}: F(M\\K) {base:.2f} -> {best[1]:.2f} without it", flush=True)
        extra = extra + [best[0]]
    if args.rounds:
        score({**groups, "extra": extra}, f"round {args.rounds}, added {[format_head(h) for h in extra]}")


if __name__ == "__main__":
    main()
