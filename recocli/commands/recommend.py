"""`reco recommend`: ranked top-K lists from a model version into gold/recommendations (and a file)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import pyarrow as pa
import pyarrow.compute as pc
import typer

from lakehouse import catalog, delta
from lakehouse.catalog import Warehouse
from lakehouse.errors import RecoError
from recocli.commands.options import ConfigOption, JsonOption, WarehouseOption, settings_from
from recocli.console import out, print_json, print_table

ENGINES = ("local", "spark")

if TYPE_CHECKING:
    from recocli.recommend.run import RunResult


def recommend(
    warehouse: WarehouseOption = None,
    config: ConfigOption = None,
    k: Annotated[int | None, typer.Option("-k", "--k", min=1, help="List length (default 20).")] = None,
    users: Annotated[
        str | None,
        typer.Option(help="Comma-separated user ids, spaces around each ignored (default: all users)."),
    ] = None,
    users_file: Annotated[Path | None, typer.Option(help="File with one user id per line.")] = None,
    active_since: Annotated[
        str | None, typer.Option(help="Only users with events in this long back from now, e.g. 1h, 7d.")
    ] = None,
    user: Annotated[
        str | None, typer.Option(help="Show one user's list as a table (with titles); writes nothing.")
    ] = None,
    model_version: Annotated[int | None, typer.Option(help="Model version (default: latest).")] = None,
    holdout: Annotated[
        float,
        typer.Option(
            min=0.0, max=1.0, help="Share of users (stable by id) served the popular list: an A/B holdout."
        ),
    ] = 0.0,
    export: Annotated[Path | None, typer.Option(help="Also write the run's rows to this file.")] = None,
    export_format: Annotated[
        str | None, typer.Option("--format", help="parquet, csv or jsonl (default: from the file name).")
    ] = None,
    engine: Annotated[
        str,
        typer.Option(
            help="local: score in this process; spark: on Spark's executors (spark.master), the model "
            "broadcast, the same lists."
        ),
    ] = "local",
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing export file.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Score the whole catalog for each user (batched matrix products + top-K), leave out what they
    already interacted with and blocklisted items, and append one run to gold/recommendations.

    SASRec reads each user's latest events at recommend time, so clicks ingested after the model
    was trained already change the list. The version's ranker blends the model's scores with
    time-decayed popularity (half-life and weight chosen at training: `reco models show`); users the
    model knows nothing about get that popularity alone (strategy = popular). Every run is kept in
    gold/recommendations (a run appears whole, in one commit); gold/latest_recommendations holds each
    user's newest list, also from partial runs (--users, --active-since). A run with no users writes
    nothing.
    """
    from recocli.recommend.export import check_export_target, export_rows
    from recocli.recommend.run import Request, publish
    from recocli.recommend.run import recommend as run_recommend

    if engine not in ENGINES:
        raise RecoError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    fmt = check_export_target(export, export_format, force) if export is not None else None
    settings = settings_from(config, warehouse, **{"recommend.k": k})
    Warehouse(settings.warehouse).require()
    chosen = chosen_users(users, users_file, user)
    request = Request(
        k=settings.recommend.k,
        users=chosen,
        active_since=active_since,
        model_version=model_version,
        holdout=holdout,
    )
    if engine == "spark":
        from recocli.engines.spark import spark_scorer  # starts a JVM: import only for this engine
        from spark_jobs.session import build_session

        result = run_recommend(settings, request, spark_scorer(build_session(settings.spark)))
    else:
        result = run_recommend(settings, request)
    if user is not None:
        _show_user(Warehouse(settings.warehouse), result.rows, user, json_output)
        return
    written = publish(settings, result)
    if export is not None:
        export_rows(result.rows, export, fmt)
    print_run(result, export, json_output, written)


def chosen_users(users: str | None, users_file: Path | None, user: str | None) -> list[str] | None:
    """The users asked for: --users and the lines of --users-file (spaces around each id dropped), or
    --user alone, as written; None: all. An empty --users or --users-file asks for nobody, not all."""
    if user is not None and not user.strip():
        raise RecoError("--user names no user: give a user id")
    chosen = [u.strip() for u in users.split(",") if u.strip()] if users is not None else None
    if users_file is not None:
        if not users_file.is_file():
            raise RecoError(f"users file not found: {users_file}")
        try:
            lines = users_file.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            raise RecoError(f"users file {users_file} is not UTF-8 text (one user id per line)") from None
        chosen = (chosen or []) + [t.strip() for t in lines if t.strip()]
    if user is not None:
        chosen = [user]
    return chosen


def print_run(result: RunResult, export: Path | None, json_output: bool, written: bool = True) -> None:
    """The run's id, version, user counts, rows and seconds, as JSON or one line."""
    summary = {
        "run_id": result.run_id if written else None,
        "model_version": result.model_version,
        "users": result.users,
        "model_users": result.model_users,
        "popular_users": result.popular_users,
        "rows": result.rows.num_rows,
        "seconds": round(result.seconds, 3),
        "export": str(export) if export else None,
    }
    if json_output:
        print_json(summary)
        return
    if not written:
        out.print(f"no users to recommend for ({result.users} users): nothing written")
        return
    out.print(
        f"run {result.run_id}: {result.users} users ({result.model_users} from model "
        f"v{result.model_version}, {result.popular_users} popular fallback), "
        f"{result.rows.num_rows} rows in {result.seconds:.2f}s"
        + (f"; exported to {export}" if export else "")
    )


def _show_user(warehouse: Warehouse, rows: pa.Table, user: str, json_output: bool) -> None:
    items = delta.read_table(warehouse.uri(catalog.ITEMS), columns=["item_id", "title"])
    titles = dict(zip(items["item_id"].to_pylist(), items["title"].to_pylist(), strict=True)) if items else {}
    mine = rows.filter(pc.equal(rows["user_id"], user)).to_pylist()
    if json_output:
        print_json([{**r, "title": titles.get(r["item_id"])} for r in mine])
        return
    if not mine:
        out.print(f"user {user}: nothing left to recommend (every item is seen or blocked)")
        return
    strategy = mine[0]["strategy"]
    print_table(
        f"user {user} — {strategy} list",
        ["rank", "item", "score", *(["title"] if titles else [])],
        [
            [
                r["rank"],
                r["item_id"],
                f"{r['score']:.4f}",
                *([titles.get(r["item_id"], "")] if titles else []),
            ]
            for r in mine
        ],
    )
