"""`reco maintain`: compact the warehouse's Delta tables and vacuum the files no version needs."""

from __future__ import annotations

from typing import Annotated

import typer

from lakehouse.catalog import Warehouse
from lakehouse.maintain import maintain as run_maintain
from recocli.commands.options import ConfigOption, JsonOption, WarehouseOption, default, settings_from
from recocli.console import print_json, print_table


def maintain(
    warehouse: WarehouseOption = None,
    config: ConfigOption = None,
    retention: Annotated[
        str | None,
        typer.Option(
            help="Vacuum files that no version younger than this needs, e.g. 7d, 48h "
            f"{default('maintain.retention')}.",
            show_default=False,
        ),
    ] = None,
    no_compact: Annotated[bool, typer.Option("--no-compact", help="Skip the compaction.")] = False,
    no_vacuum: Annotated[bool, typer.Option("--no-vacuum", help="Skip the vacuum.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Rewrite each table's small files into larger ones (delta-rs optimize: a commit that changes no
    rows) and delete the files no version younger than the retention needs (vacuum).

    Holds the warehouse's writer locks: exit 3 while `reco ingest` or `reco data import` runs
    (run it from cron between ingest runs). Row counts are the same before and after.
    """
    settings = settings_from(config, warehouse, **{"maintain.retention": retention})
    done = run_maintain(
        Warehouse(settings.warehouse).require(),
        settings.maintain.retention,
        compact=not no_compact,
        vacuum=not no_vacuum,
    )
    if json_output:
        print_json({"tables": [t.as_dict() for t in done]})
        return
    print_table(
        f"maintain {settings.warehouse} (retention {settings.maintain.retention})",
        ["table", "files before", "files after", "files vacuumed", "rows"],
        [[t.table, t.files_before, t.files_after, t.files_vacuumed, t.rows_after] for t in done],
    )
