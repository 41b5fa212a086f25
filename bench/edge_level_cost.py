"""Counted work (forward-equivalents) of one edge-level evaluation of a hypothesis file's wiring and
of a few of its edge-level null draws, on the file's model and prompts (mean ablation).

    .venv/bin/python bench/edge_level_cost.py [N] [hypothesis.yaml]

Run it on two checkouts (PYTHONPATH=...) to compare versions: the counts do not depend on
the machine's load, the seconds do.
"""
import sys
import time

import numpy as np
import torch

from circuitspec.ablation.edge import Wire, edge_level_logit_diff, wires_from_circuit
from circuitspec.bridge.loading import load_model
from circuitspec.scoring.circuit_null import CircuitMaps
from circuitspec.spec.load import load_hypothesis
from circuitspec.verification.context import RunContext
from circuitspec.verification.run import hypothesis_dataset
from circuitspec.verification.settings import Options, resolve

n = int(sys.argv[1]) if len(sys.argv) > 1 else 16
hyp = load_hypothesis(sys.argv[2] if len(sys.argv) > 2 else "hypotheses/ioi_smollm2_135m.yaml")
model = load_model(hyp.model_spec.name)
ds = hypothesis_dataset(hyp, model.tokenizer, default_prepend_bos=model.info.default_prepend_bos, n_prompts=n, seed=None, templates=None)
with torch.no_grad():
    ctx = RunContext(hyp, model, ds, resolve(hyp, Options(n_prompts=n)))
    run = ctx.runner("mean")
    wires = wires_from_circuit(ctx.circuit, at_positions=hyp.edge_positions == "at")
    w = ctx.work
    with w.at("edge_level"):
        t = time.perf_counter()
        fc = edge_level_logit_diff(run, wires)
        t1 = time.perf_counter() - t
    maps = CircuitMaps.of(run, sorted(ctx.circuit.heads()), 0)
    vals = []
    with w.at("null3"):
        t = time.perf_counter()
        for i in range(3):
            image, _ = maps.get(i)
            moved = [Wire(tuple(image[h] for h in x.senders), tuple(image[h] for h in x.receivers), x.via, x.positions) for x in wires]
            vals.append(float(edge_level_logit_diff(run, moved).double().mean()))
        t2 = time.perf_counter() - t
fe = {k: v / w.per_forward for k, v in w.token_layers.items()}
print("F", float(fc.double().mean() / run.clean.double().mean()), "null", np.round(vals, 6))
print("fe", {k: round(v, 3) for k, v in fe.items()}, "s", round(t1, 1), round(t2, 1))
