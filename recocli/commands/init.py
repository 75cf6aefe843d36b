"""`reco init`: create a warehouse (every table, empty) and a landing folder, explicitly."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lakehouse.catalog import Warehouse
from lakehouse.delta import create_tables
from lakehouse.landing import check_landing_target, create_landing
from recocli.commands.options import ConfigOption, JsonOption, WarehouseOption, settings_from
from recocli.console import out, print_json


def init(
    warehouse: WarehouseOption = None,
    config: ConfigOption = None,
    landing: Annotated[
        Path | None, typer.Option(help="Landing folder to create [default: ./landing].", show_default=False)
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Create the warehouse's Delta tables (empty) and the landing folder's events/ and feedback/.

    Other commands never create a warehouse or a landing folder they were pointed at, so that a
    mistyped path fails (exit 2) instead of starting an empty one; `reco data import` and
    `reco demo` create what they fill. Running it again changes nothing that exists.
    """
    settings = settings_from(config, warehouse, **{"ingest.landing": landing and str(landing)})
    root = Warehouse(settings.warehouse)
    check_landing_target(settings.ingest.landing)
    created = create_tables(root)
    folders = create_landing(settings.ingest.landing)
    if json_output:
        print_json(
            {"warehouse": str(root.root), "tables_created": created, "landing": str(folders[0].parent)}
        )
        return
    out.print(
        f"warehouse {root.root}: {len(created)} table(s) created"
        + (f" ({', '.join(created)})" if created else "")
    )
    out.print(f"landing {folders[0].parent}: events/ and feedback/ ready")
    out.print(f"next: reco ingest --once --landing {folders[0].parent} --warehouse {root.root}")
