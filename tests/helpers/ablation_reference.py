"""Slow references for node and edge ablation: one prompt at a time, hooks written here."""

from __future__ import annotations

import torch

from circuitspec.ablation.edge import Wire
from circuitspec.data.dataset import Dataset


# ---------------------------------------------------------------- references
def logit_diff_one(bridge, clean, end, correct, incorrect, hooks) -> float:
    with torch.no_grad():
        logits = bridge.run_with_hooks(torch.tensor([clean]), fwd_hooks=hooks)
    return float(logits[0, end, correct] - logits[0, end, incorrect])


def z_of(bridge, tokens) -> dict[int, torch.Tensor]:
    """hook_z of every layer for one prompt, captured by a hook written here."""
    store: dict[int, torch.Tensor] = {}
    n_layers = bridge.cfg.n_layers

    def grab(layer):
        def fn(z, hook):
            store[layer] = z[0].clone()
            return z

        return fn

    with torch.no_grad():
        bridge.run_with_hooks(
            torch.tensor([tokens]),
            fwd_hooks=[(f"blocks.{L}.attn.hook_z", grab(L)) for L in range(n_layers)],
        )
    return store


def set_z(values: dict[int, torch.Tensor], where=None):
    """Hooks replacing each layer's z by ``values[layer]`` ([pos, heads, d_head]); ``where``
    optionally limits it to a [pos, heads] boolean mask per layer."""

    def make(layer):
        def fn(z, hook):
            new = values[layer].to(z.dtype).expand_as(z[0])
            if where is not None:
                new = torch.where(where[layer][..., None], new, z[0])
            return new.unsqueeze(0)

        return fn

    return [(f"blocks.{L}.attn.hook_z", make(L)) for L in values]


def manual_template_means(bridge, ds: Dataset) -> dict[int, dict[int, torch.Tensor]]:
    sums: dict[int, dict[int, torch.Tensor]] = {}
    counts: dict[int, int] = {}
    for i, toks in enumerate(ds.corrupt):
        t = ds.template[i]
        z = z_of(bridge, toks)
        counts[t] = counts.get(t, 0) + 1
        for L, v in z.items():
            sums.setdefault(t, {})[L] = sums.get(t, {}).get(L, 0) + v
    return {t: {L: v / counts[t] for L, v in per.items()} for t, per in sums.items()}


def ablated_z(bridge, ds, kind: str) -> list[dict[int, torch.Tensor]]:
    """Per prompt, per layer: the ablated z [pos, heads, d_head], computed here."""
    if kind == "mean":
        means = manual_template_means(bridge, ds)
        return [means[ds.template[i]] for i in range(len(ds))]
    if kind == "resample":
        return [z_of(bridge, ds.corrupt[i]) for i in range(len(ds))]
    cfg = bridge.cfg
    return [{L: torch.zeros(len(ds.clean[i]), cfg.n_heads, cfg.d_head) for L in range(cfg.n_layers)}
            for i in range(len(ds))]


def reference(model, ds, wires: list[Wire], kind: str) -> list[float]:
    bridge = model.bridge
    n_layers, n_heads = bridge.cfg.n_layers, bridge.cfg.n_heads
    group_size = n_heads // model.info.n_kv_heads
    out = []
    for i, ablated in enumerate(ablated_z(bridge, ds, kind)):
        tokens = torch.tensor([ds.clean[i]])

        def at(names, i=i):
            mask = torch.zeros(len(ds.clean[i]), dtype=torch.bool)
            if names is None:
                mask[:] = True
            for name in names or ():
                mask[ds.positions[name][i]] = True
            return mask

        circuit: dict[tuple[int, int], torch.Tensor] = {}

        def z_values(sources, below, ablated=ablated, circuit=circuit):
            values = {L: ablated[L].clone() for L in range(below)}
            for (L, h), mask in sources:
                values[L][mask, h] = circuit[(L, h)][mask]
            return values

        def residual(sources, layer, tokens=tokens):
            store = {}

            def grab(x, hook):
                store["x"] = x[0].clone()
                return x

            hooks = set_z(z_values(sources, layer)) + [(f"blocks.{layer}.hook_resid_pre", grab)]
            with torch.no_grad():
                bridge.run_with_hooks(tokens, fwd_hooks=hooks, stop_at_layer=layer + 1)
            return store["x"]

        senders = sorted({s for w in wires for s in w.senders})
        for r in senders:
            layer, head = r
            views = {}
            for via in ("q", "k", "v"):
                sources = [(s, at(w.positions)) for w in wires if r in w.receivers and w.via == via
                           for s in w.senders if s[0] < layer]
                views[via] = residual(sources, layer)
            store = {}

            def put(via, slot, views=views):
                def fn(x, hook):
                    x = x.clone()
                    x[0, :, slot] = views[via]
                    return x

                return fn

            def grab_z(z, hook, head=head, store=store):
                store["z"] = z[0, :, head].clone()
                return z

            hooks = [(f"blocks.{layer}.hook_q_input", put("q", head)),
                     (f"blocks.{layer}.hook_k_input", put("k", head // group_size)),
                     (f"blocks.{layer}.hook_v_input", put("v", head // group_size)),
                     (f"blocks.{layer}.attn.hook_z", grab_z)]
            with torch.no_grad():
                bridge.run_with_hooks(tokens, fwd_hooks=hooks, stop_at_layer=layer + 1)
            circuit[r] = store["z"]
        sources = [(s, at(w.positions)) for w in wires if not w.receivers for s in w.senders]
        out.append(logit_diff_one(bridge, ds.clean[i], ds.positions["END"][i], ds.correct[i],
                                   ds.incorrect[i], set_z(z_values(sources, n_layers))))
    return out
