"""The ``cera-rag`` command line: one sub-module per command group, registered here."""

from __future__ import annotations

import typer

from cera_rag.cli import data as data_cmd

app = typer.Typer(
    name="cera-rag",
    help="CERA: evidential, explainable dense retrieval for RAG.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(data_cmd.app, name="data", help="Evidence Inference data: statistics and download.")


def _register() -> None:
    # Each command module registers itself on `app`; imported here so `cera-rag --help` lists all.
    import importlib

    for name in ("train", "evaluate", "index", "demo"):
        try:
            module = importlib.import_module(f"cera_rag.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"cera_rag.cli.{name}":
                raise
            continue
        module.register(app)


_register()


def main() -> None:
    """Entry point of the ``cera-rag`` script."""
    from cera_rag.errors import CERAError

    try:
        app()
    except CERAError as exc:
        from rich.console import Console

        Console(stderr=True).print(f"[bold red]error:[/] {exc}")
        raise SystemExit(2) from None
