"""`reco simulate`: one round of a synthetic world that uses the recommender (closed loop)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lakehouse.catalog import Warehouse
from lakehouse.landing import check_landing_target
from recocli.commands.options import ConfigOption, JsonOption, WarehouseOption, default, settings_from
from recocli.console import out, print_json
from recocli.data.replay import parse_time
from recocli.lab.simulator import run_round


def simulate(
    landing: Annotated[Path | None, typer.Option(help=f"Landing folder {default('ingest.landing')}.")] = None,
    events: Annotated[int, typer.Option(min=0, help="Organic behaviour events to write this round.")] = 1000,
    respond_to_latest_run: Annotated[
        bool,
        typer.Option(
            "--respond-to-latest-run",
            help="Answer the latest run in gold/recommendations with feedback (once per run).",
        ),
    ] = False,
    warehouse: WarehouseOption = None,
    state: Annotated[
        Path | None,
        typer.Option(help=f"Folder keeping the world between rounds {default('simulate.state')}."),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help=f"Random seed of a new world {default('simulate.seed')}.")
    ] = None,
    now: Annotated[
        str | None,
        typer.Option(help="The round's time, ISO-8601 [default: the clock]; fix it to repeat runs."),
    ] = None,
    reset: Annotated[
        bool,
        typer.Option(
            "--reset",
            help="Start a new world, forgetting the saved one. The same seed repeats its event ids "
            "(already ingested ones count as duplicates): use a new --seed for a new history.",
        ),
    ] = False,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Run one round of a simulated world of users and items (RecSim/RecoGym-style), into landing.

    Users and items have latent tastes; users act on their own (view, click, like, purchase), new
    items arrive and tastes drift between rounds ([simulate] in the config). With
    --respond-to-latest-run the users also answer the latest served lists: an impression per shown
    item, clicks and likes with probability from their true affinity, dismissals otherwise.
    The same --seed, --now and sequence of calls give the same events.
    """
    settings = settings_from(
        config,
        warehouse,
        **{
            "ingest.landing": landing and str(landing),
            "simulate.state": state and str(state),
            "simulate.seed": seed,
        },
    )
    check_landing_target(settings.ingest.landing)
    report = run_round(
        settings.simulate,
        settings.ingest.landing,
        events,
        warehouse=Warehouse(settings.warehouse) if respond_to_latest_run else None,
        now=parse_time(now, "--now"),
        reset=reset,
    )
    if json_output:
        print_json(report.as_dict())
        return
    feedback = ", ".join(f"{n} {action}" for action, n in sorted(report.feedback.items())) or "no feedback"
    answered = f" to run {report.answered_run}" if report.answered_run else ""
    out.print(
        f"round {report.round}: {report.events} events, {feedback}{answered}; "
        f"{report.items} items in the world"
    )
    if report.note:
        out.print(report.note)
