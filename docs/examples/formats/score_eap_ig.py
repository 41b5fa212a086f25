"""Score SmolLM2's heads with a simple attribution and write the scores as an EAP-IG graph.

This stands in for a run of EAP-IG itself: the scores come from circuitspec's
gradient attribution of path patching (``path_patch_sweep(method="attribution")``),
for every head into the logits and every earlier head into the top head's query
at END, and the file is written in EAP-IG's ``Graph.to_json`` layout with the json
module (cfg, every node, edges by name). Nothing is marked in the circuit: the
scores alone are the result, as with MIB's importance-score submissions.

    python docs/examples/formats/score_eap_ig.py OUT.json [N_PROMPTS]
"""

from __future__ import annotations

import json
import math
import sys

from circuitspec.analyses.sweeps import path_patch_sweep
from circuitspec.bridge.loading import load_model
from circuitspec.data.ioi import build_ioi

METHOD = "exact"  # path patching with the fast engine; "attribution" is its gradient estimate


def main(out: str, n_prompts: int = 16) -> None:
    model = load_model("smollm2-135m-instruct")
    data = build_ioi(model.tokenizer, n_prompts=n_prompts, seed=1, corruption="abc",
                     prepend_bos=model.info.default_prepend_bos)
    n_layers, n_heads = model.info.n_layers, model.info.n_heads
    edges: dict[str, dict] = {}
    logits = path_patch_sweep(model, data, [], None, "END", method=METHOD, progress=False)
    for layer in range(n_layers):
        for head in range(n_heads):
            score = float(logits.values[layer, head])
            edges[f"a{layer}.h{head}->logits"] = {"score": score, "in_graph": False}
    flat = logits.values.flatten().nan_to_num(0.0)
    top = divmod(int(flat.abs().argmax()), n_heads)  # the strongest head into the logits
    q = path_patch_sweep(model, data, [top], "q", "END", method=METHOD, progress=False)
    for layer in range(top[0]):
        for head in range(n_heads):
            score = float(q.values[layer, head])
            if not math.isnan(score):
                edges[f"a{layer}.h{head}->a{top[0]}.h{top[1]}<q>"] = {"score": score,
                                                                     "in_graph": False}
    nodes = {"input": {"in_graph": False}}
    for layer in range(n_layers):
        nodes |= {f"a{layer}.h{h}": {"in_graph": False} for h in range(n_heads)}
        nodes[f"m{layer}"] = {"in_graph": False}
    nodes["logits"] = {"in_graph": True}
    cfg = {"n_layers": n_layers, "n_heads": n_heads, "parallel_attn_mlp": False,
           "d_model": model.info.d_model}
    with open(out, "w") as fh:
        json.dump({"cfg": cfg, "nodes": nodes, "edges": edges}, fh)
    print(f"wrote {out}: {len(edges)} scored edges; top head into the logits L{top[0]}H{top[1]}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 16)
