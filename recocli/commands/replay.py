"""`reco replay`: stream a dataset's events into the landing folder in time order, paced."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lakehouse.catalog import Warehouse
from lakehouse.errors import RecoError
from lakehouse.landing import check_landing_target
from recocli.commands.options import ConfigOption, JsonOption, WarehouseOption, default, settings_from
from recocli.console import out, print_json
from recocli.data.replay import check_pace, iso, load_events, newest_event_time, parse_time
from recocli.data.replay import replay as run_replay
from recocli.progress import Bar


def replay(
    source: Annotated[
        Path,
        typer.Argument(help="A MovieLens folder, or a warehouse folder (its bronze/events is replayed)."),
    ],
    landing: Annotated[Path | None, typer.Option(help=f"Landing folder {default('ingest.landing')}.")] = None,
    speed: Annotated[
        float | None, typer.Option(help="Times real time: 86400 replays a day of events per second.")
    ] = None,
    rate: Annotated[float | None, typer.Option(help="Events per second, whatever their timestamps.")] = None,
    until: Annotated[
        str | None, typer.Option(help="Stop after the last event at or before this ISO-8601 time.")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Start with the first event at or after this ISO-8601 time.")
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Start at the newest event time in --warehouse's bronze/events (its events are "
            "written again and counted as duplicates by ingest): continue an interrupted replay.",
        ),
    ] = False,
    warehouse: WarehouseOption = None,
    limit: Annotated[int | None, typer.Option(min=0, help="Stop after this many events.")] = None,
    batch_events: Annotated[
        int | None, typer.Option(min=1, help=f"Most events per landing file {default('data.file_events')}.")
    ] = None,
    flush_every: Annotated[
        str | None,
        typer.Option(
            help=f"Write at most one file per interval unless behind schedule {default('data.replay_flush')}."
        ),
    ] = None,
    retime: Annotated[
        bool,
        typer.Option(
            "--retime",
            help="Stamp each event with the time it is written (the original goes to context.original_ts).",
        ),
    ] = False,
    dataset: Annotated[
        str | None, typer.Option(help="MovieLens name used in event ids [default: from the folder name].")
    ] = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Stream a dataset's events into LANDING/events/ in timestamp order, as whole files (temp, rename).

    Pace with --speed (× real time) or --rate (events/s); without either, as fast as possible.
    Event ids are the dataset's own, so ingesting a replay twice adds nothing. Rehearse production
    traffic with `reco ingest --train` running on the same landing folder.
    """
    settings = settings_from(
        config,
        warehouse,
        **{
            "ingest.landing": landing and str(landing),
            "data.file_events": batch_events,
            "data.replay_flush": flush_every,
        },
    )
    check_pace(speed, rate)
    check_landing_target(settings.ingest.landing)
    moment = parse_time(until, "--until")
    start = parse_time(since, "--since")
    if resume and start is not None:
        raise RecoError("give --since or --resume, not both")
    if resume:
        start = newest_event_time(Warehouse(settings.warehouse))
    events, label = load_events(source, dataset)
    if not json_output:
        pace = f"{speed:g}× real time" if speed else f"{rate:g} events/s" if rate else "unpaced"
        out.print(f"replaying {label} events into {settings.ingest.landing}, {pace}")
        if start is not None:
            out.print(
                f"starting at {iso(start)}" + (f" (newest event in {settings.warehouse})" if resume else "")
            )

    with Bar(f"replay {label}") as bar:
        report = run_replay(
            events,
            settings.ingest.landing,
            speed=speed,
            rate=rate,
            until=moment,
            since=start,
            limit=limit,
            batch_events=settings.data.file_events,
            flush_every=settings.data.replay_flush,
            retime=retime,
            label=label,
            on_file=lambda path, n, last: bar.advance(n, f"up to {last:%Y-%m-%d %H:%M}"),
            on_total=bar.set_total,
        )
    if json_output:
        print_json(report.as_dict())
        return
    if not report.events:
        out.print("replayed nothing: no event in the time range asked for (--since, --until, --resume)")
        return
    out.print(
        f"replayed {report.events} events in {report.files} files ({report.first_ts} … {report.last_ts}) "
        f"in {report.seconds:.1f}s"
    )
