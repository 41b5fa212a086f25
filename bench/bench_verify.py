"""Benchmark: the whole default ``verify`` against a naive implementation of the same statistics.

    .venv/bin/python bench/bench_verify.py [--hypothesis hypotheses/ioi_smollm2_135m.yaml] [--n N]
        [--naive-sweeps K] [--naive-keeps K] [--ratio] [--device cuda]

``--ratio`` only times one plain forward pass over the run's clean prompts (full logits,
the median of three, before and after) and the whole default ``circuitspec.verify`` in the
same process, and prints the wall-time ratio beside the counted forward-equivalents.

The fast run is ``circuitspec.verify``'s own stages (engine caches, edges with their
per-head breakdown and layer-matched nulls, circuit scores with both circuit nulls, the
robustness panel), run here step by step so that every patched sender and every ablated
keep-set it evaluates is recorded with its stage. The naive implementation then recomputes
the same senders and keep-sets with nothing shared: each patched sender is the notebook's
four full passes (``bench_patching.naive_edge``), each keep-set one full forward over every
prompt with its ablated heads' ``hook_z`` replaced and the full logits computed. With
``--naive-sweeps`` / ``--naive-keeps`` (default 3 each; -1: every item, hours at the file's
n_prompts) the naive side runs on K items of each stage (spread over the stage) and its time
is extrapolated per stage from the mean per item.
Edge-level faithfulness and its null are not keep-sets; they are reported fast-only.

Printed: per stage the fast seconds and forward-equivalents, the naive estimate and the
ratio; the largest difference in F values (mean logit difference / F(M)) between the two;
peak RSS (and on CUDA the peak device memory); the total in forward-equivalents. With
``--device cuda`` both sides run on the GPU (each timed pass ends with a synchronize).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from bench_patching import naive_patch  # noqa: E402

from circuitspec.ablation.node import AblationRunner, Keep  # noqa: E402
from circuitspec.bridge.loading import load_model  # noqa: E402
from circuitspec.data.tasks import hypothesis_dataset  # noqa: E402
from circuitspec.spec.load import check_against_model, load_hypothesis  # noqa: E402
from circuitspec.verification.context import RunContext  # noqa: E402
from circuitspec.verification.edges import verify_edge  # noqa: E402
from circuitspec.verification.run import claims  # noqa: E402
from circuitspec.verification.settings import Options, resolve  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_device(device: str) -> str:
    """', peak CUDA memory N MiB' on a CUDA device, else ''."""
    if not device.startswith("cuda"):
        return ""
    return f", peak CUDA memory {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB"


def sync(device: torch.device) -> None:
    """Wait for the device's queued work, so a wall time covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def spread(items: list, k: int | None) -> list:
    if k is None or k < 0 or k >= len(items):
        return items
    if k <= 0:
        return []
    return [items[round(j * (len(items) - 1) / max(1, k - 1))] for j in range(k)]


@torch.no_grad()
def naive_keep(runner: AblationRunner, keep: Keep) -> torch.Tensor:
    """One full forward per length group, heads outside ``keep`` replaced at ``hook_z``."""
    bridge, ds = runner.bridge, runner.dataset
    kept = runner.all_heads if keep.heads is None else keep.heads
    out = torch.empty(len(ds))
    dev = runner.bridge.W_U.device
    for idx in ds.length_groups():
        tokens = torch.tensor([ds.clean[i] for i in idx], device=dev)
        hooks = []
        for layer in range(runner.n_layers):
            drop = [h for h in range(runner.n_heads) if (layer, h) not in kept]
            if not drop:
                continue
            repl = torch.stack([runner.z_replacement(i, layer) for i in idx])

            def hook(z, hook, drop=drop, repl=repl):
                z = z.clone()
                z[:, :, drop] = repl[:, :, drop].to(z.dtype)
                return z

            hooks.append((f"blocks.{layer}.attn.hook_z", hook))
        logits = bridge.run_with_hooks(tokens, fwd_hooks=hooks)
        end = torch.tensor([ds.positions["END"][i] for i in idx], device=dev)
        rows = torch.arange(len(idx), device=dev)
        last = logits[rows, end]
        out[torch.tensor(idx)] = (last[rows, torch.tensor([ds.correct[i] for i in idx], device=dev)]
                                  - last[rows, torch.tensor([ds.incorrect[i] for i in idx], device=dev)]).float().cpu()
    return out


@torch.no_grad()
def forward_seconds(model, ds, repeats: int = 3) -> float:
    """Median wall time of one plain forward pass (full logits) over every clean prompt."""
    dev = model.bridge.W_U.device
    batches = [torch.tensor([ds.clean[i] for i in idx], device=dev) for idx in ds.length_groups()]
    times = []
    for _ in range(repeats):
        sync(dev)
        t = time.perf_counter()
        for tokens in batches:
            model.bridge(tokens)
        sync(dev)
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def wall_ratio(hyp_path: str, hyp, model, ds, n: int | None, device: str = "cpu") -> None:
    """The whole default ``verify`` against one forward pass of its prompts, in one process."""
    import circuitspec as cs

    before = forward_seconds(model, ds)
    start = time.perf_counter()
    result = cs.verify(hyp_path, model=model, n_prompts=n, device=device)
    seconds = time.perf_counter() - start
    after = forward_seconds(model, ds)
    forward = (before + after) / 2
    work = result.work or {}
    print(f"one forward: {before:.2f} s before, {after:.2f} s after verify (mean {forward:.2f} s)")
    print(f"{'stage':<18} {'s':>8} {'forward-eq.':>12} {'x forward (wall)':>17}")
    for stage, secs in (result.timings or {}).items():
        print(f"{stage:<18} {secs:8.1f} {work.get(stage, 0.0):12.2f} {secs / forward:17.1f}")
    print(f"whole verify: {seconds:.1f} s = {seconds / forward:.0f} forwards (wall); "
          f"{sum(work.values()):.0f} forward-equivalents counted; passed={result.passed}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hypothesis", default=str(ROOT / "hypotheses" / "ioi_smollm2_135m.yaml"))
    ap.add_argument("--n", type=int, default=None, help="n_prompts (default: the file's)")
    # The naive side of a whole verify is hours (every item four or one full passes): by
    # default it runs on 3 items per stage, spread over the stage, and extrapolates.
    ap.add_argument("--naive-sweeps", type=int, default=3, help="naive patches per stage (default 3; -1: all)")
    ap.add_argument("--naive-keeps", type=int, default=3, help="naive keep-sets per stage (default 3; -1: all)")
    ap.add_argument("--ratio", action="store_true",
                    help="only time one forward and the whole default verify (the wall-time ratio)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (both sides run there)")
    args = ap.parse_args()

    hyp = load_hypothesis(args.hypothesis)
    model = load_model(hyp.model_spec.name, revision=hyp.model_spec.revision, device=args.device)
    check_against_model(hyp, model.info)
    torch.manual_seed(hyp.task.seed or 0)
    ds = hypothesis_dataset(hyp, model.tokenizer, default_prepend_bos=model.info.default_prepend_bos,
                            n_prompts=args.n)
    print(f"{hyp.name}: {len(ds)} prompts, threads={torch.get_num_threads()}, device={args.device}")
    if args.ratio:
        wall_ratio(args.hypothesis, hyp, model, ds, args.n, args.device)
        return
    opts = Options(n_prompts=args.n, device=args.device)
    rss0 = peak_rss_mib()

    # --- the fast run, recording what each stage evaluates ------------------------------------
    start = time.perf_counter()
    v = RunContext(hyp, model, ds, resolve(hyp, opts))
    work = v.work
    sweeps: list[tuple[str, object, object, torch.Tensor]] = []  # stage, sender, receiver, values
    inner = v.sweep

    def recorded_sweep(senders, receiver, semantics=None):
        rows = inner(senders, receiver, semantics)
        if semantics in (None, v.settings.semantics):
            sweeps.extend((work.stage, s, receiver, torch.as_tensor(r)) for s, r in zip(senders, rows, strict=True))
        return rows

    v.sweep = recorded_sweep  # type: ignore[method-assign]
    keeps: list[tuple[str, str, Keep]] = []  # stage, ablation kind, keep-set (first evaluation)

    def runner_for(kind: str) -> AblationRunner:
        pool = v.mean_pool() if kind == "mean" else None  # as verify's own runner (claims.runner)
        with work.at("ablation_caches"):
            run = AblationRunner(model, ds, kind, work=work, mean_pool=pool)  # type: ignore[arg-type]
        evaluate = run.run

        def recorded(specs):
            for k in specs:
                k = k if isinstance(k, Keep) else Keep.of(k)
                key = run._key(k)
                if key not in run._memo:
                    keeps.append((work.stage, kind, key))
            return evaluate(specs)

        run.run = recorded  # type: ignore[method-assign]
        return run

    for kind in ("mean", "resample", "zero"):
        v._runners[kind] = runner_for(kind)  # the recording runners serve every claim
    with torch.no_grad():
        with work.at("edges"):
            edges = [verify_edge(v, e) for e in v.circuit.edges]
        with work.at("circuit_scores"):
            _, measured = claims.circuit_scores(v)
        with work.at("robustness"):
            claims.robustness(v, edges, measured)
    fast_total = time.perf_counter() - start
    rss_fast = peak_rss_mib()
    fe = work.forward_equivalents()
    print(f"fast verify: {fast_total:.1f} s, {work.total:.1f} forward-equivalents, peak RSS {rss_fast:.0f} MiB "
          f"(+{rss_fast - rss0:.0f} over the loaded model){peak_device(args.device)}")

    # --- the naive implementation on the same senders and keep-sets --------------------------------
    clean, corrupt = v.clean.mean(), v.corrupt.mean()
    by_stage: dict[str, list] = defaultdict(list)
    for stage, sender, receiver, values in sweeps:
        by_stage[stage].append(("sweep", sender, receiver, values))
    skipped = 0
    for stage, kind, keep in keeps:
        if keep.positions or keep.mlps is not None:  # naive_keep ablates whole heads only
            skipped += 1
            continue
        by_stage[stage].append(("keep", kind, keep, None))
    worst = 0.0
    naive_total = 0.0
    print(f"\n{'stage':<18} {'items':>6} {'naive run':>9} {'fast s':>8} {'fast f-e':>9} {'naive s (est)':>14} "
          f"{'ratio':>7} {'max |dF|':>9}")
    for stage in dict.fromkeys([*work.seconds, *by_stage]):
        items = by_stage.get(stage, [])
        sw = [x for x in items if x[0] == "sweep"]
        kp = [x for x in items if x[0] == "keep"]
        chosen = spread(sw, args.naive_sweeps) + spread(kp, args.naive_keeps)
        t0 = time.perf_counter()
        per_item: dict[str, list[float]] = {"sweep": [], "keep": []}
        diff = 0.0
        for what, a, b, values in chosen:
            t = time.perf_counter()
            if what == "sweep":
                got = naive_patch(model, v.engine, a, b).double()
                # effects, in units of the clean-corrupt gap, the scale edges are judged on
                diff = max(diff, abs(float((got.mean() - values.double().mean()) / (clean - corrupt))))
            else:
                run = v.runner(a)
                got = naive_keep(run, b).double()
                fm = float(run.clean.double().mean())
                diff = max(diff, abs(float(got.mean() - run._memo[b].double().mean())) / abs(fm))
            per_item[what].append(time.perf_counter() - t)
        spent = time.perf_counter() - t0
        est = sum(len(group) * (sum(ts) / len(ts)) for group, ts in ((sw, per_item["sweep"]), (kp, per_item["keep"]))
                  if ts)
        fast_s = work.seconds.get(stage, 0.0)
        worst = max(worst, diff)
        naive_total += est
        ratio = f"{est / fast_s:7.1f}" if chosen and fast_s else "      -"
        print(f"{stage:<18} {len(items):>6} {len(chosen):>9} {fast_s:8.2f} {fe.get(stage, 0.0):9.2f} "
              f"{est if chosen else float('nan'):14.1f} {ratio} {diff if chosen else float('nan'):9.2e}")
        del spent
    if skipped:
        print(f"({skipped} keep-sets with per-position heads or MLP knock-outs had no naive run)")
    print(f"\ntotal: fast {fast_total:.1f} s, naive (estimated over the stages it covers) {naive_total:.1f} s, "
          f"ratio {naive_total / fast_total:.1f}x; largest difference in F {worst:.2e} "
          f"({'within' if worst <= 1e-4 else 'OVER'} 1e-4); fast work {work.total:.1f} forward-equivalents; "
          f"peak RSS {peak_rss_mib():.0f} MiB{peak_device(args.device)}")


if __name__ == "__main__":
    main()
