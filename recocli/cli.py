"""The `reco` command line: one Typer app, one file per command under recocli/commands/."""

from __future__ import annotations

import sys

import typer
from rich.markup import escape
from typer.core import TyperOption

from lakehouse.errors import as_reco_error
from recocli import __version__
from recocli.commands import (
    data,
    demo,
    ingest,
    init,
    maintain,
    recommend,
    replay,
    report,
    serve,
    simulate,
    status,
)
from recocli.commands import evaluate as evaluate_command
from recocli.commands import models as models_command
from recocli.commands import train as train_command
from recocli.console import err


def _flags_take_no_value() -> None:
    """Typer 0.29+ gives every option a type column, flags too ("--json <bool>"), which reads as if
    the flag wanted a value: flags get none. Older Typers show no type for flags and lack the hook."""
    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is None:
        return

    def display_type_rich(self: TyperOption, ctx) -> str | None:
        return None if self.is_flag else shown(self, ctx)

    TyperOption.display_type_rich = display_type_rich


_flags_take_no_value()
app = typer.Typer(
    name="reco",
    help=(
        "Real-time recommender loop: stream behaviour and feedback events into Delta Lake, "
        "fine-tune models on every micro-batch, serve ranked lists, learn from their feedback.\n\n"
        "Exit codes: 0 ok, 1 failure, 2 bad input or config, 3 busy (another run holds the lock), "
        "130 interrupted."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="markdown",
)
app.command("init")(init.init)
app.command("ingest")(ingest.ingest)
app.command("status")(status.status)
app.command("maintain")(maintain.maintain)
app.command("demo")(demo.demo)
app.command("recommend")(recommend.recommend)
app.command("report")(report.report)
app.command("serve")(serve.serve)
app.add_typer(data.app, name="data")
app.command("replay")(replay.replay)
app.command("evaluate")(evaluate_command.evaluate)
app.command("simulate")(simulate.simulate)
app.command("train")(train_command.train)
app.add_typer(models_command.app, name="models")


def _version(value: bool) -> None:
    if value:
        print(f"reco {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """Real-time recommender loop on Spark, Delta Lake and PyTorch Lightning."""


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except BaseException as exc:
        explained = as_reco_error(exc)
        if explained is None:
            raise
        err.print(f"[bold red]error:[/] {escape(str(explained))}")
        sys.exit(explained.exit_code)
