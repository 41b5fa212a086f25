"""The commands beyond verify: explore and suggest, diff, sweep, and the circuit formats.

Each parses its arguments, calls the API and prints, as :mod:`circuitspec.cli` does; the
``circuitspec`` app registers them. Like the rest of the command line, they import the
library inside the command, so ``circuitspec --help`` starts fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from circuitspec.verification.limits import check_limits, describe

__all__ = ["curve_", "diff", "explore", "export", "import_", "in_range", "mib_score", "suggest", "sweep"]


def in_range(name: str) -> dict[str, Any]:
    """typer.Option keywords that check ``name`` against its accepted range: outside it,
    a usage error (exit 2) that states the range."""

    def check(value: int | None) -> int | None:
        if value is not None and check_limits({name: value}):
            raise typer.BadParameter(f"{value} is outside the accepted range: {describe(name)}")
        return value

    return {"callback": check}


def _explore_inputs(
    model: str | None, hypothesis: Path | None, task: str, n_prompts: int | None, seed: int | None
) -> tuple[Any, Any, str, int]:
    """Load the model and build the prompts, from MODEL + --task or from a hypothesis file."""
    from circuitspec.bridge.device import check_device
    from circuitspec.bridge.loading import load_model
    from circuitspec.data.tasks import build_dataset, hypothesis_dataset
    from circuitspec.errors import CircuitSpecError
    from circuitspec.spec.load import load_hypothesis
    from circuitspec.spec.schema import TaskSpec

    if hypothesis is not None:
        hyp = load_hypothesis(hypothesis)
        spec = hyp.model_spec
        loaded = load_model(spec.name, revision=spec.revision, device=check_device(hyp), dtype=spec.dtype)
        overrides: dict[str, Any] = {k: v for k, v in (("n_prompts", n_prompts), ("seed", seed)) if v is not None}
        if hyp.discovery is not None and not overrides:
            # Re-exploring a hypothesis looks at the prompts it was found on, not the held-out ones.
            d = hyp.discovery
            overrides = {"n_prompts": d.n_prompts, "seed": d.seed, "templates": d.templates}
        dataset = hypothesis_dataset(hyp, loaded.tokenizer,
                                     default_prepend_bos=loaded.info.default_prepend_bos, **overrides)
        return loaded, dataset, spec.name, overrides.get("seed", hyp.task.seed)
    if model is None:
        raise CircuitSpecError("give a MODEL (alias, Hugging Face id or folder) or --hypothesis FILE")
    if task != "ioi":
        raise CircuitSpecError(f"--task {task!r}: only ioi is supported; use --hypothesis for your own prompts")
    loaded = load_model(model)
    seed = 0 if seed is None else seed
    dataset = build_dataset(TaskSpec(kind="ioi", corruption="abc"), loaded.tokenizer,
                            prepend_bos=loaded.info.default_prepend_bos,
                            n_prompts=32 if n_prompts is None else n_prompts, seed=seed)
    return loaded, dataset, model, seed


def explore(
    model: Annotated[str | None, typer.Argument(help="Packaged alias, Hugging Face id or local folder.")] = None,
    task: Annotated[str, typer.Option("--task", help="The task: ioi.")] = "ioi",
    hypothesis: Annotated[Path | None, typer.Option("--hypothesis", help="Take model and task from this file.")] = None,
    n_prompts: Annotated[int | None, typer.Option("--n-prompts", help="Number of prompts (default 32).",
                                                  **in_range("n_prompts"))] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of the prompt generator.", **in_range("seed"))] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for the JSON/CSV numbers and PNGs.")] = Path("explore"),
    only: Annotated[str | None, typer.Option("--only", help="Comma-separated analyses (default: all): logit_lens, dla, attention, patch_resid, patch_attn_mlp, patch_heads, patch_heads_by_pos, patch_qkv, path_sweeps, backup.")] = None,
    sweep_method: Annotated[str, typer.Option("--sweep-method", help="exact | attribution")] = "exact",
    patch_prompts: Annotated[int | None, typer.Option(
        "--patch-prompts", help="Activation patching on the first N prompts only (default: all).",
        **in_range("patch_prompts"))] = None,
) -> None:
    """Run the notebook's analyses (logit lens, DLA, patching, attention, sweeps) and save them."""
    from circuitspec.analyses.explore import ANALYSES
    from circuitspec.analyses.explore import explore as run_explore
    from circuitspec.errors import CircuitSpecError
    from circuitspec.output.console import timed_log

    if sweep_method not in ("exact", "attribution"):
        raise CircuitSpecError(f"--sweep-method {sweep_method!r}: choose exact or attribution")
    names = [n.strip() for n in only.split(",") if n.strip()] if only else None
    for name in names or []:
        if name not in ANALYSES:
            from circuitspec.errors import did_you_mean

            raise CircuitSpecError(f"--only {name!r}{did_you_mean(name, ANALYSES)}; analyses: {', '.join(ANALYSES)}")
    if out.exists() and not out.is_dir():
        raise CircuitSpecError(f"--out {out}: is a file; give a folder (it is created if missing)")
    loaded, dataset, _, _ = _explore_inputs(model, hypothesis, task, n_prompts, seed)
    summary = run_explore(loaded, dataset, out, only=names, sweep_method=sweep_method,
                          patch_prompts=patch_prompts, log=timed_log())
    typer.echo(f"wrote {sum(len(f) for f in summary['files'].values())} files to {out}")


def suggest(
    model: Annotated[str | None, typer.Argument(help="Packaged alias, Hugging Face id or local folder.")] = None,
    task: Annotated[str, typer.Option("--task", help="The task: ioi.")] = "ioi",
    hypothesis: Annotated[Path | None, typer.Option("--hypothesis", help="Take model and task from this file.")] = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the draft YAML.")] = Path("draft.yaml"),
    n_prompts: Annotated[int | None, typer.Option("--n-prompts", help="Number of prompts (default 32).",
                                                  **in_range("n_prompts"))] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of the prompt generator.", **in_range("seed"))] = None,
    confirm: Annotated[int, typer.Option("--confirm", help="Senders per sweep confirmed by exact path patching.",
                                         **in_range("confirm"))] = 6,
    grow_edges: Annotated[bool, typer.Option("--grow-edges", help="Grow the edges one by one on exact "
                                             "edge-level faithfulness, then prune (analyses/grow.py).")] = False,
    start: Annotated[Path | None, typer.Option("--from", help="With --grow-edges: start from this file's "
                                               "groups (and take model and task from it).")] = None,
    keep_edges: Annotated[bool, typer.Option("--keep-edges", help="With --from: grow from that file's edges "
                                             "instead of none (they are pruned like the rest).")] = False,
    band: Annotated[str, typer.Option("--band", help="With --grow-edges: stop once edge-level "
                                      "faithfulness lies in LO,HI.")] = "0.8,1.2",
    max_edges: Annotated[int, typer.Option("--max-edges", min=1, help="With --grow-edges: most edges.")] = 20,
    tolerance: Annotated[float, typer.Option("--tolerance", min=0.0, help="With --grow-edges: smallest "
                                             "faithfulness gain to add an edge, largest change to prune.")] = 0.01,
    grow_exact: Annotated[int, typer.Option("--grow-exact", min=1, help="With --grow-edges: candidates "
                                            "per step evaluated exactly, after the path-patching screen.")] = 3,
    max_seconds: Annotated[float | None, typer.Option("--max-seconds", min=1.0, help="With --grow-edges: "
                                                      "stop growing (and pruning) after this long.")] = None,
    min_effect: Annotated[float | None, typer.Option("--min-effect", min=0.0, help="With --grow-edges: grow only "
                                                     "edges whose path-patching effect clears this (default: the "
                                                     "--from file's edge bar, else 0.05; 0: any edge).")] = None,
) -> None:
    """Draft an IOI hypothesis (heads per role, edges, evidence as comments) for MODEL."""
    from circuitspec.analyses.grow_draft import grow_hypothesis
    from circuitspec.analyses.suggest import suggest as run_suggest
    from circuitspec.errors import CircuitSpecError
    from circuitspec.output.console import timed_log

    if not output.parent.is_dir():
        raise CircuitSpecError(f"-o {output}: folder {str(output.parent)!r} does not exist")
    if output.is_dir():
        raise CircuitSpecError(f"-o {output}: is a folder; give a .yaml file to write")
    if start is not None and not grow_edges:
        raise CircuitSpecError("--from: only with --grow-edges")
    if keep_edges and start is None:
        raise CircuitSpecError("--keep-edges: only with --from FILE --grow-edges")
    try:
        lo, hi = (float(x) for x in band.split(","))
    except ValueError:
        raise CircuitSpecError(f"--band {band!r}: give two numbers LO,HI, e.g. 0.8,1.2") from None
    if not 0 < lo <= hi:
        raise CircuitSpecError(f"--band {band!r}: need 0 < LO <= HI")
    if model is None and hypothesis is None and start is not None:
        hypothesis = start
    loaded, dataset, ref, seed_used = _explore_inputs(model, hypothesis, task, n_prompts, seed)
    if grow_edges:
        path, result = grow_hypothesis(
            loaded, dataset, output, model_ref=ref, seed=seed_used, start=start, keep_edges=keep_edges,
            confirm=confirm, log=timed_log(), band=(lo, hi), max_edges=max_edges, tolerance=tolerance,
            n_exact=grow_exact, max_seconds=max_seconds, min_effect=min_effect)
        typer.echo(f"wrote {path}: {len(result.groups)} groups, {len(result.edges)} edges, edge-level "
                   f"faithfulness {result.faithfulness:.3f} ({result.stop}); validated")
        return
    path, draft = run_suggest(loaded, dataset, output, model_ref=ref, seed=seed_used, confirm=confirm,
                              log=timed_log())
    groups = ", ".join(f"{name} ({len(heads)})" for name, (_, heads) in draft.groups.items())
    typer.echo(f"wrote {path}: {groups}; validated")


def diff(
    a: Annotated[Path, typer.Argument(help="Run A: a results.json (or the folder holding it).")],
    b: Annotated[Path, typer.Argument(help="Run B: a results.json (or the folder holding it).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the changes as JSON.")] = False,
) -> None:
    """What changed from run A to run B; exit 1 when a verdict got worse, 0 otherwise."""
    from circuitspec.output.diff import diff_files

    changes = diff_files(a, b)
    if as_json:
        import json

        typer.echo(json.dumps(changes.to_json(), indent=2))
    else:
        typer.echo("\n".join(changes.lines()))
    raise typer.Exit(1 if changes.worse else 0)


def sweep(
    sweep_file: Annotated[Path, typer.Argument(help="The sweep YAML file (hypotheses x grid of models and settings).")],
    out: Annotated[Path, typer.Option("--out", help="Folder for cells/<id>/results.json, sweep.json/csv/md/html.")] = Path("sweep"),
    address: Annotated[str | None, typer.Option(
        "--address", help="An existing Ray cluster (ray://host:10001 or host:6379); default: a local Ray.")] = None,
    retry_failed: Annotated[bool, typer.Option(
        "--retry-failed", help="Run again the cells that failed on bad input (runtime failures always are).")] = False,
) -> None:
    """Verify hypotheses over a grid of models and settings on Ray; resumes where it stopped.

    Exit 0 when every cell ran and passed, 1 when a cell failed or a claim did not hold."""
    from circuitspec.sweep.report import write_report
    from circuitspec.sweep.runner import run_sweep
    from circuitspec.sweep.spec import load_sweep

    loaded = load_sweep(sweep_file)
    try:
        run = run_sweep(loaded, out, address=address, retry_failed=retry_failed,
                        log=lambda line: typer.echo(line, err=True))
    except KeyboardInterrupt:
        typer.echo(f"interrupted; finished cells are kept in {out}/cells: run the same command to "
                   "finish the rest", err=True)
        raise typer.Exit(130) from None
    settings = ", ".join(f"{k}={v}" for k, v in loaded.spec.verify.model_dump().items())
    write_report(out, loaded.spec.name, run.states, f"verify settings: {settings}.")
    c = run.counts
    typer.echo(f"{len(run.states)} cells ({run.ran} run, {c['reused']} recorded before): {c['done']} done, "
               f"{c['passed']} passed, {c['failed']} failed; wrote {out}/sweep.md, sweep.html, "
               f"sweep.json, sweep.csv")
    raise typer.Exit(0 if c["passed"] == len(run.states) else 1)

def import_(
    file: Annotated[Path, typer.Argument(help="The circuit file (EAP-IG/MIB .json or .pt, ACDC edges.pkl, auto-circuit .json).")],
    fmt: Annotated[str, typer.Option("--format", help="eap-ig | mib-pt | acdc | auto-circuit")],
    model: Annotated[str, typer.Option("--model", help="The model the circuit is for: alias, Hugging Face id or folder.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the hypothesis YAML.")] = Path("hypothesis.yaml"),
    top_k: Annotated[int | None, typer.Option("--top-k", help="The circuit: the K edges with the largest |score|.")] = None,
    threshold: Annotated[float | None, typer.Option("--threshold", help="The circuit: edges with |score| >= T.")] = None,
    in_graph: Annotated[bool, typer.Option("--in-graph", help="The circuit: the edges the file marks in_graph (the default when it has them).")] = False,
    roles: Annotated[Path | None, typer.Option("--roles", help="Role map YAML (group: {role, heads, at}), or a hypothesis file whose groups to reuse.")] = None,
    group: Annotated[str, typer.Option("--group", help="Heads outside the role map: one group per head or per layer.")] = "head",
    at: Annotated[str | None, typer.Option("--at", help="Positions per input, e.g. q=END,k=S2,v=S2 (default END).")] = None,
    n_prompts: Annotated[int, typer.Option("--n-prompts", help="task.n_prompts of the hypothesis.")] = 64,
) -> None:
    """Read a circuit found by EAP-IG/MIB, ACDC or auto-circuit into a hypothesis file."""
    from circuitspec.formats.convert import import_file

    path, notes = import_file(file, fmt, model, output, top_k=top_k, threshold=threshold,
                              in_graph=in_graph, roles=roles, group_by=group, at=at, n_prompts=n_prompts)
    for note in notes:
        typer.echo(note.line())
    typer.echo(f"wrote {path} (valid)")


def export(
    source: Annotated[Path, typer.Argument(help="A results.json (measured effects) or a hypothesis YAML (no scores).")],
    fmt: Annotated[str, typer.Option("--format", help="eap-ig | mib-pt | acdc | auto-circuit")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The file to write.")],
) -> None:
    """Write a verified circuit (or a hypothesis) as an EAP-IG/MIB, ACDC or auto-circuit file."""
    from circuitspec.formats.convert import export_file

    path, notes = export_file(source, fmt, output)
    for note in notes:
        typer.echo(note.line())
    typer.echo(f"wrote {path}")


# Options shared by the two commands that score a graph file on MIB's graph.
_GraphFormat = Annotated[str, typer.Option("--format", help="eap-ig | mib-pt | acdc | auto-circuit")]
_GraphModel = Annotated[str, typer.Option("--model", help="The model: alias, Hugging Face id or folder.")]
_IoiPrompts = Annotated[int, typer.Option("--n-prompts", help="IOI prompts to score on.", **in_range("n_prompts"))]
_IoiSeed = Annotated[int, typer.Option("--seed", help="Seed of the IOI prompts (and of curve's bootstrap "
                                       "and random rankings).", **in_range("seed"))]


def _check_corruption(value: str) -> str:
    if value not in ("abc", "s_swap"):
        raise typer.BadParameter(f"{value!r}: choose abc or s_swap")
    return value


_IoiCorruption = Annotated[str, typer.Option(
    "--corruption", callback=_check_corruption,
    help="abc (three fresh names) or s_swap (S2 becomes the IO name, MIB's default IOI "
         "counterfactual s2_io_flip; needs an even --n-prompts).")]


def _graph_on_ioi(file: Path, fmt: str, model: str, n_prompts: int, seed: int,
                  corruption: str) -> tuple[Any, Any, Any]:
    """The graph file (read before any model work is wasted on a bad file, then checked
    against the model's shape), the loaded model, and its IOI prompts."""
    from circuitspec.bridge.loading import load_model
    from circuitspec.data.ioi import build_ioi
    from circuitspec.formats.convert import READERS, check_format
    from circuitspec.formats.graph import check_fits

    graph = READERS[check_format(fmt)](file)
    loaded = load_model(model)
    check_fits(graph, loaded.info.n_layers, loaded.info.n_heads, model)
    data = build_ioi(loaded.tokenizer, n_prompts=n_prompts, seed=seed, corruption=corruption,
                     prepend_bos=loaded.info.default_prepend_bos)
    return graph, loaded, data


def mib_score(
    file: Annotated[Path, typer.Argument(help="An edge-scored circuit file (any import format).")],
    fmt: _GraphFormat,
    model: _GraphModel,
    top_k: Annotated[int | None, typer.Option("--top-k", help="The circuit: the K edges with the largest |score|.")] = None,
    threshold: Annotated[float | None, typer.Option("--threshold", help="The circuit: edges with |score| >= T.")] = None,
    in_graph: Annotated[bool, typer.Option("--in-graph", help="The circuit: the edges the file marks in_graph.")] = False,
    n_prompts: _IoiPrompts = 32,
    seed: _IoiSeed = 0,
    corruption: _IoiCorruption = "abc",
) -> None:
    """MIB's edge-level faithfulness of a circuit file: MLPs and the input are graph nodes."""
    from circuitspec.formats.graph import select_edges
    from circuitspec.scoring.mib import mib_faithfulness, prune

    graph, loaded, data = _graph_on_ioi(file, fmt, model, n_prompts, seed, corruption)
    chosen, _ = select_edges(graph, top_k=top_k, threshold=threshold, in_graph=in_graph)
    edges = prune([e.key for e in chosen])
    score = mib_faithfulness(loaded, data, edges)
    typer.echo(f"{file}: {len(edges)} edges ({len(chosen)} chosen, pruned as EAP-IG prunes) on "
               f"{len(data)} IOI prompts (seed {seed}, {corruption} corruption)")
    typer.echo(f"m(C) {score.circuit:.4f}  m(empty) {score.empty:.4f}  m(M) {score.model:.4f}")
    typer.echo(f"MIB faithfulness (m(C) - m(empty)) / (m(M) - m(empty)) = {score.faithfulness:.4f}")


def curve_(
    scores: Annotated[Path, typer.Argument(help="An edge-scored graph (any import format).")],
    fmt: _GraphFormat,
    model: _GraphModel,
    out: Annotated[Path, typer.Option("--out", help="Folder for curve.json and curve.png.")] = Path("curve"),
    n_prompts: _IoiPrompts = 32,
    seed: _IoiSeed = 0,
    corruption: _IoiCorruption = "abc",
    n_random: Annotated[int, typer.Option("--n-random", help="Random rankings in the baseline.",
                                          **in_range("n_random"))] = 2,
    n_bootstrap: Annotated[int, typer.Option("--n-bootstrap", help="Bootstrap resamples over prompts.",
                                             **in_range("n_bootstrap"))] = 1000,
) -> None:
    """MIB's faithfulness curve (0.1-100 % of edges), CPR and CMD with intervals, vs random rankings."""
    import json

    from circuitspec.output.atomic import atomic_write_text
    from circuitspec.scoring.curve import baseline, curve, plot

    graph, loaded, data = _graph_on_ioi(scores, fmt, model, n_prompts, seed, corruption)
    curves = curve(loaded, data, graph.edges, n_random=n_random, n_bootstrap=n_bootstrap, seed=seed)
    random_summary = baseline(curves)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "curve.json", json.dumps(
        {"source": str(scores), "model": model, "n_prompts": len(data), "seed": seed,
         "corruption": corruption,
         "curves": [c.to_json() for c in curves], "random_baseline": random_summary}, indent=1) + "\n")
    plot(curves, out / "curve.png", f"{scores.name} on {model}")
    for c in curves:
        typer.echo(f"{c.ranking:>9}: CPR {c.cpr:.3f} [{c.cpr_ci[0]:.3f}, {c.cpr_ci[1]:.3f}]  "
                   f"CMD {c.cmd:.3f} [{c.cmd_ci[0]:.3f}, {c.cmd_ci[1]:.3f}]"
                   + (f"  ({c.nonfinite} resamples with m(M) = m(empty) left out of the intervals)"
                      if c.nonfinite else ""))
    if random_summary is not None:
        r = random_summary
        typer.echo(f"   random: CPR {r['cpr_mean']:.3f} (range {r['cpr_range'][0]:.3f}-{r['cpr_range'][1]:.3f}) "
                   f"CMD {r['cmd_mean']:.3f} (range {r['cmd_range'][0]:.3f}-{r['cmd_range'][1]:.3f}) over "
                   f"{r['n']} random ranking(s): a spread over draws, not an interval")
    typer.echo("MIB's leaderboard takes CPR from the signed ranking and CMD from the absolute one; "
               "intervals resample prompts with the ranking held fixed")
    typer.echo(f"wrote {out / 'curve.json'} and {out / 'curve.png'}")
