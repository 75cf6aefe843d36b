"""`reco data import` and `reco data fetch`: bring public datasets into the warehouse."""

from __future__ import annotations

from enum import Enum, StrEnum
from pathlib import Path
from typing import Annotated

import typer

from recocli.commands.options import ConfigOption, JsonOption, WarehouseOption, default, settings_from
from recocli.console import out, print_json, print_table
from recocli.data.fetch import ARCHIVES, fetch
from recocli.data.importer import import_movielens
from recocli.progress import Bar

app = typer.Typer(
    name="data",
    help="Bring public datasets in: `fetch` downloads MovieLens, `import` loads a MovieLens folder.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)


class Source(StrEnum):
    movielens = "movielens"


class Target(StrEnum):
    bronze = "bronze"
    landing = "landing"


DatasetName = Enum("DatasetName", {name: name for name in ARCHIVES}, type=str)  # type: ignore[misc]


@app.command("import")
def import_(
    source: Annotated[Source, typer.Argument(help="Dataset family (only movielens for now).")],
    path: Annotated[
        Path, typer.Argument(help="Folder of ml-100k, ml-1m, ml-10m, ml-20m, ml-25m or ml-latest(-small).")
    ],
    to: Annotated[
        Target,
        typer.Option(
            help="bronze: validate and commit to bronze/events now (bulk backfill); "
            "landing: write JSON-lines files for `reco ingest` to take."
        ),
    ] = Target.bronze,
    dataset: Annotated[
        str | None,
        typer.Option(help="Name used in event ids (ml-NAME-user-item-ts) [default: from the folder name]."),
    ] = None,
    landing: Annotated[Path | None, typer.Option(help="Landing folder for --to landing.")] = None,
    warehouse: WarehouseOption = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Import MovieLens ratings as `rating` events, and the movies into reference/items.

    The layout is detected from the files (u.data + u.item; ratings.dat + movies.dat;
    ratings.csv + movies.csv). Event ids are built from each row, so importing again adds nothing:
    the repeated rows are counted as duplicates. Both routes run the same validation as
    `reco ingest`; rows it rejects go to bronze/quarantine with their reason. The movies always go
    to the warehouse's reference/items (merged by item_id), with --to landing too. Exit 3 while
    `reco ingest` runs on the warehouse: bronze has one writer at a time.
    """
    settings = settings_from(config, warehouse, **{"ingest.landing": landing and str(landing)})
    with Bar(f"importing {path.name}") as bar:
        report = import_movielens(
            settings,
            path,
            to=to.value,
            dataset=dataset,
            on_rows=lambda n, note: bar.advance(n, note),
            on_total=bar.set_total,
        )
    if json_output:
        print_json(report.as_dict())
        return
    where = settings.ingest.landing if to is Target.landing else f"{settings.warehouse} bronze/events"
    print_table(
        f"imported MovieLens {report.dataset} ({report.layout} layout) → {where}",
        ["ratings", "items", "events written", "duplicates", "quarantined", "batches/files", "seconds"],
        [
            [
                report.ratings,
                report.items,
                "-" if to is Target.landing else report.events_written,
                "-" if to is Target.landing else report.duplicates,
                "-" if to is Target.landing else report.quarantined,
                report.batches,
                report.seconds,
            ]
        ],
    )
    if to is Target.landing:
        out.print(
            f"next: reco ingest --once --landing {settings.ingest.landing} --warehouse {settings.warehouse}"
        )


@app.command("fetch")
def fetch_(
    name: Annotated[DatasetName, typer.Argument(help="Which MovieLens release.", show_default=False)],
    folder: Annotated[
        Path | None, typer.Option("--dir", help=f"Where to unpack it {default('data.dir')}.")
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(help=f"Base URL holding NAME.zip, or the zip's URL {default('data.movielens_url')}."),
    ] = None,
    sha256: Annotated[
        str | None, typer.Option(help="Expected SHA-256 of the zip, instead of the pinned one.")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Download again even when the folder exists.")
    ] = False,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Download a MovieLens zip from GroupLens, check its SHA-256 and unpack it into DIR/NAME.

    Exit 1 when the download fails or the checksum differs (nothing is unpacked then).
    Mind GroupLens's terms: research use, no redistribution, cite Harper & Konstan (2015).
    """
    settings = settings_from(config, None, **{"data.dir": folder and str(folder), "data.movielens_url": url})
    with Bar(f"{name.value}.zip", unit_bytes=True) as bar:
        result = fetch(
            name.value,
            settings.data.dir,
            settings.data.movielens_url,
            sha256=sha256,
            force=force,
            on_start=lambda source, size: bar.set_total(size),
            on_bytes=bar.advance,
        )
    if json_output:
        print_json(result.as_dict())
    elif not result.downloaded:
        out.print(f"{result.folder} is already there (--force downloads it again)")
    else:
        out.print(f"downloaded {result.url}")
        out.print(
            f"sha256 {result.sha256} ok ({result.checked_against}), {result.size} bytes; "
            f"unpacked into {result.folder}"
        )
        out.print(f"next: reco data import movielens {result.folder}")
