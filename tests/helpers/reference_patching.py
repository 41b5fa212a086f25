"""An independent, slow, obviously-correct path-patching reference for the tests.

It follows the seed notebook's four passes and deliberately uses different
mechanics from circuitspec's engine:

- pass C freezes every head's q, k and v (post-projection hooks) at their clean
  values and writes the senders' corrupted ``hook_z``; it records the receivers'
  own q / rotated k / v, one pass per receiver layer;
- pass D edits the receiver head alone: q via ``hook_q``; k by recomputing that
  head's attention-score column from the live query and pass C's key; v by
  adding ``pattern[:, p] * (v_C[p] - v[p])`` to that head's ``hook_z``. No batch
  doubling, no residual-input replacement.

``direct`` semantics: the receiver's q/k/v is recomputed from its clean residual
plus the senders' ``z @ W_O`` writes, through the folded norm, by hand.
"""

from __future__ import annotations

import math

import torch


def _tokens(ds, which):
    return torch.tensor(getattr(ds, which), dtype=torch.long)


def _ld(logits, ds):
    rows = torch.arange(len(ds))
    end = torch.tensor(ds.positions["END"])
    correct = torch.tensor(ds.correct)
    incorrect = torch.tensor(ds.incorrect)
    last = logits[rows, end]
    return last[rows, correct] - last[rows, incorrect]


def _has(bridge, name):
    return name in bridge.hook_dict


def _norm(x, bridge, layer):
    """ln1 of a compatibility-mode bridge: weights folded, so only normalisation remains."""
    ln = bridge.blocks[layer].ln1
    if "RMS" in type(ln.original_component).__name__ or "Rms" in type(
        ln.original_component
    ).__name__:
        eps = getattr(ln.original_component, "variance_epsilon", None) or ln.original_component.eps
        return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    eps = ln.original_component.eps
    x = x - x.mean(-1, keepdim=True)
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)


@torch.no_grad()
def reference_patch(model, ds, senders, receivers, via, at, semantics="path", freeze_mlps=False):
    """Per-prompt patched logit difference. All prompts in ``ds`` must share one length.

    senders: list of (layer, head) or ("mlp", layer); receivers: list of (layer, head) or
    "logits"; at: position name or None (every position).
    """
    bridge = model.bridge
    n_layers, n_heads = model.info.n_layers, model.info.n_heads
    group = n_heads // model.info.n_kv_heads
    clean, corrupt = _tokens(ds, "clean"), _tokens(ds, "corrupt")
    batch, n_pos = clean.shape
    _, cache_c = bridge.run_with_cache(clean)
    _, cache_r = bridge.run_with_cache(corrupt)
    rows = torch.arange(batch)
    if at is None:
        pos_mask = torch.ones(batch, n_pos, dtype=torch.bool)
    else:
        pos_mask = torch.zeros(batch, n_pos, dtype=torch.bool)
        pos_mask[rows, torch.tensor(ds.positions[at])] = True
    head_senders = [s for s in senders if s[0] != "mlp"]
    mlp_senders = [s[1] for s in senders if s[0] == "mlp"]
    rot = _has(bridge, "blocks.0.attn.hook_rot_k")
    kname = "hook_rot_k" if rot else "hook_k"
    qname = "hook_rot_q" if rot else "hook_q"

    def freeze(name):
        def hook(act, hook):
            return cache_c[name]

        return hook

    def corrupt_z(layer, heads):
        def hook(z, hook):
            z = z.clone()
            for h in heads:
                z[:, :, h] = cache_r[f"blocks.{layer}.attn.hook_z"][:, :, h]
            return z

        return hook

    def corrupt_mlp(layer):
        def hook(out, hook):
            return cache_r[f"blocks.{layer}.hook_mlp_out"]

        return hook

    def pass_c_hooks(upto):
        hooks = []
        for layer in range(upto):
            for kind in ("q", "k", "v"):
                name = f"blocks.{layer}.attn.hook_{kind}"
                hooks.append((name, freeze(name)))
            heads = [h for (sl, h) in head_senders if sl == layer]
            if heads:
                hooks.append((f"blocks.{layer}.attn.hook_z", corrupt_z(layer, heads)))
            if layer in mlp_senders:
                hooks.append((f"blocks.{layer}.hook_mlp_out", corrupt_mlp(layer)))
            elif freeze_mlps:
                name = f"blocks.{layer}.hook_mlp_out"
                hooks.append((name, freeze(name)))
        return hooks

    if receivers == "logits":
        if semantics == "path":
            return _ld(bridge.run_with_hooks(clean, fwd_hooks=pass_c_hooks(n_layers)), ds)
        delta = _writes(bridge, cache_c, cache_r, head_senders, mlp_senders, n_layers)

        def add_final(x, hook):
            return x + delta

        return _ld(bridge.run_with_hooks(clean, fwd_hooks=[("ln_final.hook_in", add_final)]), ds)

    # The receivers' new q / rotated k / v, per layer.
    new = {}
    for layer in sorted({layer for layer, _ in receivers}):
        if semantics == "path":
            store = {}

            def grab(name, store=store):
                def hook(act, hook):
                    store[name] = act.clone()
                    return act

                return hook

            names = [f"blocks.{layer}.attn.hook_q", f"blocks.{layer}.attn.{kname}",
                     f"blocks.{layer}.attn.hook_v", f"blocks.{layer}.attn.hook_k"]
            bridge.run_with_hooks(
                clean, fwd_hooks=pass_c_hooks(layer) + [(n, grab(n)) for n in names],
                stop_at_layer=layer + 1,
            )
            new[layer] = {"q": store[names[0]], "k": store.get(names[1]), "v": store[names[2]],
                          "k_prerot": store[names[3]]}
        else:
            delta = _writes(bridge, cache_c, cache_r, head_senders, mlp_senders, layer)
            x = _norm(cache_c[f"blocks.{layer}.hook_resid_pre"] + delta, bridge, layer)
            attn = bridge.blocks[layer].attn
            q = torch.einsum("bpd,hde->bphe", x, attn.W_Q) + _bias(attn.b_Q)
            k = torch.einsum("bpd,hde->bphe", x, attn.W_K) + _bias(attn.b_K)
            v = torch.einsum("bpd,hde->bphe", x, attn.W_V) + _bias(attn.b_V)
            # Let the model rotate our key: a side pass with hook_k replaced, read hook_rot_k.
            store = {"k": None}

            def put_k(act, hook, k=k):
                return k

            def get_k(act, hook, store=store):
                store["k"] = act.clone()
                return act

            bridge.run_with_hooks(
                clean,
                fwd_hooks=[(f"blocks.{layer}.attn.hook_k", put_k), (f"blocks.{layer}.attn.{kname}", get_k)],
                stop_at_layer=layer + 1,
            ) if group > 1 else None
            new[layer] = {"q": q, "k": store["k"], "v": v, "k_prerot": k}

    hooks = []
    live = {}

    def keep(name):
        def hook(act, hook):
            live[name] = act
            return act

        return hook

    for layer in sorted(new):
        heads = [h for (rl, h) in receivers if rl == layer]
        a = f"blocks.{layer}.attn."
        if via == "q":

            def patch_q(q, hook, layer=layer, heads=heads):
                q = q.clone()
                for h in heads:
                    q[:, :, h][pos_mask] = new[layer]["q"][:, :, h][pos_mask]
                return q

            hooks.append((a + "hook_q", patch_q))
        elif via in ("k", "v") and group == 1:
            # Without grouped-query attention each head owns its k and v: patch them as the
            # seed notebook does.
            src = "k_prerot" if via == "k" else "v"

            def patch_kv(act, hook, layer=layer, heads=heads, src=src):
                act = act.clone()
                for h in heads:
                    act[:, :, h][pos_mask] = new[layer][src][:, :, h][pos_mask]
                return act

            hooks.append((a + f"hook_{via}", patch_kv))
        elif via == "k":
            hooks += [(a + qname, keep(a + qname)), (a + kname, keep(a + kname))]

            def patch_scores(scores, hook, layer=layer, heads=heads, a=a):
                scores = scores.clone()
                q_live = live[a + qname]
                k_new = new[layer]["k"]
                d = q_live.shape[-1]
                for h in heads:
                    g = h // group
                    full = torch.einsum("bqd,bkd->bqk", q_live[:, :, h], k_new[:, :, g]) / math.sqrt(d)
                    causal = torch.ones(n_pos, n_pos, dtype=torch.bool).tril()
                    col = pos_mask[:, None, :] & causal[None]
                    scores[:, h][col] = full[col]
                return scores

            hooks.append((a + "hook_attn_scores", patch_scores))
        else:
            hooks += [(a + "hook_v", keep(a + "hook_v")), (a + "hook_pattern", keep(a + "hook_pattern"))]

            def patch_z(z, hook, layer=layer, heads=heads, a=a):
                z = z.clone()
                v_live, pattern = live[a + "hook_v"], live[a + "hook_pattern"]
                v_new = new[layer]["v"]
                for h in heads:
                    g = h // group
                    dv = (v_new[:, :, g] - v_live[:, :, g]) * pos_mask[..., None]
                    z[:, :, h] = z[:, :, h] + torch.einsum("bqk,bkd->bqd", pattern[:, h], dv)
                return z

            hooks.append((a + "hook_z", patch_z))
    return _ld(bridge.run_with_hooks(clean, fwd_hooks=hooks), ds)


def _bias(b):
    return 0 if b is None else b


def _writes(bridge, cache_c, cache_r, head_senders, mlp_senders, before_layer):
    """Sum of the senders' corrupted-minus-clean writes into the residual before a layer."""
    total = 0
    for layer, head in head_senders:
        if layer < before_layer:
            W_O = bridge.blocks[layer].attn.W_O[head]
            dz = cache_r[f"blocks.{layer}.attn.hook_z"][:, :, head] - cache_c[f"blocks.{layer}.attn.hook_z"][:, :, head]
            total = total + dz @ W_O
    for layer in mlp_senders:
        if layer < before_layer:
            name = f"blocks.{layer}.hook_mlp_out"
            total = total + cache_r[name] - cache_c[name]
    return total
