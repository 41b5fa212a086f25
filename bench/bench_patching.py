"""Benchmark: the seed notebook's path-patching loop against circuitspec's FastEngine.

    .venv/bin/python bench/bench_patching.py [--model smollm2-135m-instruct] [--n 64] [--edges 180]

Both run in this process, on the same IOI prompts and edges (spread evenly over
logits, q@END, k@S2, v@S2, k@S1+1, v@S1+1). The naive loop is the notebook's
``path_patching``: per edge, forward passes A and B cache the corrupted and clean
runs, pass C runs with every head frozen and the senders corrupted, pass D runs
with the receivers' input replaced (on grouped-query models the batch is doubled
so a k/v edge reaches only its head). Printed: per-edge times, the ratio, the
largest difference, peak memory, a 270-head sweep, and optionally a profile.
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import time

import torch

from circuitspec.patching.fast import FastEngine
from circuitspec.patching.types import LOGITS, Receiver, Sender, logit_diff, position_mask

KINDS = [("logits", None), ("q", "END"), ("k", "S2"), ("v", "S2"), ("k", "S1+1"), ("v", "S1+1")]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_edges(n_layers: int, n_heads: int, count: int, seed: int = 0) -> list[tuple[Sender, Receiver]]:
    """``count`` random single-head edges, cycling through the edge kinds."""
    rng = random.Random(seed)
    edges = []
    for i in range(count):
        via, at = KINDS[i % len(KINDS)]
        r_layer = rng.randrange(1, n_layers)
        s_layer = rng.randrange(0, r_layer)
        sender = Sender(heads=((s_layer, rng.randrange(n_heads)),))
        if via == "logits":
            edges.append((Sender(heads=((rng.randrange(n_layers), rng.randrange(n_heads)),)), LOGITS))
        else:
            edges.append((sender, Receiver(((r_layer, rng.randrange(n_heads)),), via, at)))
    return edges


@torch.no_grad()
def naive_edge(model, group, sender: Sender, receiver: Receiver) -> torch.Tensor:
    """The notebook's four passes for one edge (one length group of prompts)."""
    bridge, info = model.bridge, model.info
    n_layers = info.n_layers

    def wanted(name: str) -> bool:
        return name.endswith(("attn.hook_z", "hook_mlp_out"))

    _, cache_r = bridge.run_with_cache(group.corrupt, names_filter=wanted)  # pass A
    _, cache_c = bridge.run_with_cache(group.clean, names_filter=wanted)  # pass B
    # Pass C: every head frozen clean, the senders corrupted; record receiver-layer inputs.
    hooks = []
    for layer in range(n_layers):
        z = cache_c[f"blocks.{layer}.attn.hook_z"].clone()
        for sl, h in sender.heads:
            if sl == layer:
                z[:, :, h] = cache_r[f"blocks.{layer}.attn.hook_z"][:, :, h]
        hooks.append((f"blocks.{layer}.attn.hook_z", lambda act, hook, z=z: z))
    captured = {}
    for layer in receiver.layers:
        def grab(act, hook, layer=layer):
            captured[layer] = act.clone()
            return act
        hooks.append((f"blocks.{layer}.hook_resid_pre", grab))
    logits = bridge.run_with_hooks(group.clean, fwd_hooks=hooks)
    if receiver.is_logits:
        return logit_diff(logits, group)
    # Pass D: the receivers' q/k/v input replaced at the receiver position.
    batch, n_pos = group.clean.shape
    mask = position_mask(group, (receiver.at,), n_pos)
    gs = info.n_heads // info.n_kv_heads
    doubled = receiver.via in ("k", "v") and gs > 1
    hooks = []
    for layer, head in receiver.heads:
        slot = head if receiver.via == "q" else head // gs

        def put(act, hook, layer=layer, slot=slot):
            act = act.clone()
            part = act[:batch, :, slot]
            part[mask] = captured[layer][mask]
            act[:batch, :, slot] = part
            return act
        hooks.append((f"blocks.{layer}.hook_{receiver.via}_input", put))
    if doubled:
        # One merge per layer, for all its receivers at once: a second merge hook on the same
        # layer would read the first one's output, where the patched copy is already gone.
        for layer in receiver.layers:
            heads = [h for lay, h in receiver.heads if lay == layer]

            def merge(z, hook, heads=heads):
                out = z[batch:].clone()
                out[:, :, heads] = z[:batch, :, heads]
                return torch.cat([out, out])
            hooks.append((f"blocks.{layer}.attn.hook_z", merge))
    tokens = torch.cat([group.clean, group.clean]) if doubled else group.clean
    return logit_diff(bridge.run_with_hooks(tokens, fwd_hooks=hooks)[:batch], group)


def naive_patch(model, engine: FastEngine, sender: Sender, receiver: Receiver) -> torch.Tensor:
    out = torch.empty(len(engine.dataset))
    for group in engine.groups:  # on the model's device; the result comes back to the CPU
        out[group.index.cpu()] = naive_edge(model, group, sender, receiver).cpu()
    return out


def build(model_ref: str, n: int):
    from circuitspec.bridge.loading import load_model
    from circuitspec.data.tasks import build_dataset
    from circuitspec.spec.schema import TaskSpec

    model = load_model(model_ref)
    task = TaskSpec(kind="ioi", n_prompts=n, seed=0, corruption="abc")
    ds = build_dataset(task, model.tokenizer, prepend_bos=model.info.default_prepend_bos)
    return model, ds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--n", type=int, default=64, help="prompts")
    ap.add_argument("--edges", type=int, default=180, help="edges for the fast engine (default: 30 of each kind)")
    ap.add_argument("--naive-edges", type=int, default=None, help="run the naive loop on the first K edges only")
    ap.add_argument("--no-sweep", action="store_true")
    ap.add_argument("--sweep-check", type=int, default=3, help="senders of the sweep checked against the naive loop")
    ap.add_argument("--profile", action="store_true", help="torch profiler over the fast edges")
    args = ap.parse_args()
    torch.manual_seed(0)

    model, ds = build(args.model, args.n)
    info = model.info
    lengths = sorted({len(c) for c in ds.clean})
    print(f"model {args.model}: {info.n_layers} layers x {info.n_heads} heads; "
          f"N={len(ds)} prompts, token lengths {lengths}; threads={torch.get_num_threads()}")
    rss0 = peak_rss_mib()
    edges = make_edges(info.n_layers, info.n_heads, args.edges)

    t0 = time.perf_counter()
    fast = FastEngine(model, ds)
    t_init = time.perf_counter() - t0
    fast_out, fast_t = [], []
    for sender, receiver in edges:
        t = time.perf_counter()
        fast_out.append(fast.patch(sender, receiver))
        fast_t.append(time.perf_counter() - t)
    rss_fast = peak_rss_mib()
    print(f"fast: cache build {t_init:.2f} s (once per run); peak RSS {rss_fast:.0f} MiB "
          f"(+{rss_fast - rss0:.0f} MiB over the loaded model)")

    k = len(edges) if args.naive_edges is None else min(args.naive_edges, len(edges))
    naive_t, worst = [], 0.0
    print(f"\n{'edge':<40} {'naive s':>8} {'fast s':>8} {'ratio':>7} {'max|diff|':>10}")
    for i, (sender, receiver) in enumerate(edges[:k]):
        t = time.perf_counter()
        want = naive_patch(model, fast, sender, receiver)
        naive_t.append(time.perf_counter() - t)
        diff = (want - fast_out[i]).abs().max().item()
        worst = max(worst, diff)
        name = f"{sender.heads} -> {'logits' if receiver.is_logits else receiver.heads}" + (
            "" if receiver.is_logits else f".{receiver.via}@{receiver.at}")
        print(f"{name:<40} {naive_t[-1]:8.3f} {fast_t[i]:8.4f} {naive_t[-1] / fast_t[i]:7.0f} {diff:10.2e}")
    print("\nper kind (mean seconds per edge, naive / fast):")
    for j, (via, at) in enumerate(KINDS):
        nt = naive_t[j::len(KINDS)]
        ft = fast_t[j:k:len(KINDS)]
        if nt:
            print(f"  {via}@{at}: {statistics.mean(nt):.3f} / {statistics.mean(ft):.4f} "
                  f"= {statistics.mean(nt) / statistics.mean(ft):.0f}x")
    if k < len(edges):
        print(f"\nfast engine on all {len(edges)} edges: {sum(fast_t):.2f} s; per kind (mean s):")
        for j, (via, at) in enumerate(KINDS):
            ft = fast_t[j :: len(KINDS)]
            nt = naive_t[j :: len(KINDS)]
            est = f" (naive mean over its first {len(nt)}: {statistics.mean(nt) / statistics.mean(ft):.0f}x)" if nt else ""
            print(f"  {via}@{at}: {statistics.mean(ft):.4f} over {len(ft)} edges{est}")
    total_naive, total_fast = sum(naive_t), sum(fast_t[:k])
    if not k:
        print(f"\n{len(edges)} fast edges: {sum(fast_t):.2f} s (no naive run); peak RSS {peak_rss_mib():.0f} MiB")
    else:
        print(f"\n{k} edges: naive {total_naive:.1f} s, fast {total_fast:.2f} s -> ratio {total_naive / total_fast:.0f}x "
              f"({total_naive / (total_fast + t_init):.0f}x counting the one-off cache build); "
              f"largest difference {worst:.2e}; peak RSS {peak_rss_mib():.0f} MiB")

    if not args.no_sweep:
        receiver = Receiver(((info.n_layers * 2 // 3, 0), (info.n_layers * 2 // 3, 1)), "q", "END")
        senders = [Sender(heads=((layer, h),)) for layer in range(info.n_layers) for h in range(info.n_heads)]
        t = time.perf_counter()
        swept = fast.sweep(receiver, senders)
        t_sweep = time.perf_counter() - t
        live = [i for i, s in enumerate(senders) if s.heads[0][0] < receiver.layers[0]]
        check = [live[round(j * (len(live) - 1) / max(1, args.sweep_check - 1))] for j in range(args.sweep_check)]
        t = time.perf_counter()
        naive = [naive_patch(model, fast, senders[i], receiver) for i in check]
        line = f"\nsweep: {len(senders)} heads -> {receiver.heads}.q@END: fast {t_sweep:.2f} s"
        if check:
            t_naive = (time.perf_counter() - t) / len(check)
            sdiff = max((swept[i] - w).abs().max().item() for i, w in zip(check, naive, strict=True))
            line += (f"; naive {t_naive:.2f} s/edge x {len(senders)} = {t_naive * len(senders):.0f} s (estimated) "
                     f"-> ratio {t_naive * len(senders) / t_sweep:.0f}x; max diff on {len(check)} checked "
                     f"senders {sdiff:.2e}")
        else:
            line += " (not checked)"
        print(f"{line}; peak RSS {peak_rss_mib():.0f} MiB")

    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
            for sender, receiver in edges:
                fast.patch(sender, receiver)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
        for e in prof.key_averages():
            if e.key in ("aten::mm", "aten::bmm") and e.self_cpu_time_total:
                seconds = e.self_cpu_time_total / 1e6
                print(f"{e.key}: {e.flops / 1e9:.1f} GFLOP in {seconds:.2f} s = {e.flops / 1e9 / seconds:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
