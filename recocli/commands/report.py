"""`reco report`: how served lists performed, per model version and day, from their feedback."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lakehouse.catalog import Warehouse
from lakehouse.files import check_writable_file
from recocli.commands.options import (
    ConfigOption,
    JsonOption,
    WarehouseOption,
    require_named_landing,
    settings_from,
)
from recocli.console import out, print_json, print_table
from recocli.recommend.report import feedback_report, plot_ctr


def report(
    warehouse: WarehouseOption = None,
    config: ConfigOption = None,
    landing: Annotated[
        Path | None,
        typer.Option(help="Landing folder whose served/ lists `reco serve` recorded [default: ./landing]."),
    ] = None,
    chart: Annotated[Path, typer.Option(help="Where to write the CTR chart (PNG).")] = Path("reco-ctr.png"),
    json_output: JsonOption = False,
) -> None:
    """Impressions, clicks, CTR, like/dislike rates and catalog coverage of what was shown, per model
    version (or the popular fallback) and day, from bronze/feedback joined to gold/recommendations and
    to the lists `reco serve` recorded under <landing>/served/."""
    settings = settings_from(config, warehouse, **{"ingest.landing": landing and str(landing)})
    require_named_landing(settings)
    check_writable_file(chart, "--chart")
    rows = feedback_report(Warehouse(settings.warehouse).require(), settings.ingest.landing)
    if rows:
        plot_ctr(rows, chart)
    if json_output:
        print_json({"rows": rows, "chart": str(chart) if rows else None})
        return
    if not rows:
        out.print("no feedback on served lists yet")
        return

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.2f}%"

    print_table(
        "served lists: feedback per model version and day",
        ["variant", "day", "impressions", "clicks", "CTR", "like", "dislike", "coverage"],
        [
            [
                r["variant"],
                r["day"],
                r["impressions"],
                r["clicks"],
                pct(r["ctr"]),
                pct(r["like_rate"]),
                pct(r["dislike_rate"]),
                pct(r["coverage"]),
            ]
            for r in rows
        ],
    )
    out.print(f"CTR chart: {chart}")
