"""An independent reference of MIB's edge-level evaluation, for tiny GPT-2 from its HF weights.

It shares nothing with circuitspec.scoring.mib: no hooks, no TransformerLens. GPT-2 is
written out by hand (embeddings, per-head attention, MLP, final norm), and every
receiver input is summed explicitly from its parents: an included parent gives its
output in this run, an excluded one its output on the corrupted prompt. Constants the
tools leave out of the graph (position embeddings, each attention layer's output bias)
are added as they are in the residual stream.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _ln(x, ln):
    return F.layer_norm(x, (x.shape[-1],), ln.weight, ln.bias, ln.eps)


def _gelu(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def _run(hf, tokens, keep, corrupt_out):
    """One forward pass; node outputs are taken from ``corrupt_out`` along excluded edges.

    ``keep(src, dst, via)`` says whether an edge is in the circuit; with ``corrupt_out``
    None every edge is kept (a plain run). Returns (logits [pos, vocab], node outputs).
    """
    tr = hf.transformer
    n_layers, n_heads = hf.config.n_layer, hf.config.n_head
    d = hf.config.n_embd
    dh = d // n_heads
    pos = tokens.shape[0]
    outs = {"input": tr.wte.weight[tokens]}
    const = tr.wpe.weight[:pos].clone()  # position embeddings: the same on both prompts

    def gather(dst, via, parents, extra):
        x = const + extra
        for p in parents:
            use = corrupt_out is not None and not keep(p, dst, via)
            x = x + (corrupt_out[p] if use else outs[p])
        return x

    parents = ["input"]
    bias = torch.zeros(d)
    for L in range(n_layers):
        block = tr.h[L]
        w, b = block.attn.c_attn.weight, block.attn.c_attn.bias  # [d, 3d]
        mask = torch.tril(torch.ones(pos, pos, dtype=torch.bool))
        results = []
        for h in range(n_heads):
            sl = slice(h * dh, (h + 1) * dh)
            qkv = {}
            for i, via in enumerate("qkv"):
                x = _ln(gather(f"L{L}H{h}", via, parents, bias), block.ln_1)
                cols = slice(i * d + h * dh, i * d + (h + 1) * dh)
                qkv[via] = x @ w[:, cols] + b[cols]
            scores = (qkv["q"] @ qkv["k"].T) / math.sqrt(dh)
            scores = scores.masked_fill(~mask, float("-inf"))
            z = torch.softmax(scores, dim=-1) @ qkv["v"]
            results.append(z @ block.attn.c_proj.weight[sl, :])
        for h in range(n_heads):
            outs[f"L{L}H{h}"] = results[h]
        parents += [f"L{L}H{h}" for h in range(n_heads)]
        bias = bias + block.attn.c_proj.bias
        x = _ln(gather(f"MLP{L}", None, parents, bias), block.ln_2)
        outs[f"MLP{L}"] = block.mlp.c_proj(_gelu(block.mlp.c_fc(x)))
        parents.append(f"MLP{L}")
    x = _ln(gather("logits", None, parents, bias), tr.ln_f)
    return x @ hf.lm_head.weight.T, outs


@torch.no_grad()
def reference_metric(hf, dataset, edges) -> list[float]:
    """Per-prompt END logit difference with only ``edges`` ((src, dst, via)) clean."""
    keep_set = set(edges)
    out = []
    for i in range(len(dataset)):
        _, corrupt_out = _run(hf, torch.tensor(dataset.corrupt[i]), lambda *e: True, None)
        logits, _ = _run(hf, torch.tensor(dataset.clean[i]), lambda s, d, v: (s, d, v) in keep_set,
                         corrupt_out)
        end = logits[dataset.positions["END"][i]]
        out.append(float(end[dataset.correct[i]] - end[dataset.incorrect[i]]))
    return out
