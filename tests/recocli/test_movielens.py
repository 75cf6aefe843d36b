"""MovieLens import: each real layout parsed exactly, then into bronze (real Spark validation + Delta)."""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime

import pyarrow.compute as pc
import pytest
from helpers import MOVIELENS, run_reco, table
from movielens_fixtures import (
    ITEMS,
    RATINGS,
    csv_genres,
    expected_events,
    write_100k,
    write_csv,
    write_dat,
)

from lakehouse import catalog
from lakehouse.catalog import Warehouse
from lakehouse.errors import BusyError, RecoError
from lakehouse.locks import exclusive_lock
from lakehouse.schemas import TS
from recocli.config import load_settings
from recocli.data import movielens
from recocli.data.importer import import_app_id, import_movielens
from spark_jobs.ingest import run_ingest


def same(genres):
    return genres


LAYOUTS = [
    pytest.param(write_100k, "ml-100k", "100k", same, id="ml-100k"),
    pytest.param(lambda f: write_dat(f, "latin-1"), "ml-1m", "dat", same, id="ml-1m-latin1"),
    pytest.param(lambda f: write_dat(f, "utf-8"), "ml-10M100K", "dat", same, id="ml-10m-utf8"),
    pytest.param(lambda f: write_csv(f, "\r\n"), "ml-latest-small", "csv", csv_genres, id="csv-crlf"),
    pytest.param(lambda f: write_csv(f, "\n"), "ml-25m", "csv", csv_genres, id="csv-lf"),
]


def settings_for(tmp_path, **overrides):
    return load_settings(
        env={},
        overrides={
            "warehouse": str(tmp_path / "warehouse"),
            "ingest.landing": str(tmp_path / "landing"),
            **overrides,
        },
    )


def event_rows(events) -> list[tuple]:
    return [
        (e["event_id"], e["user_id"], e["item_id"], e["value"], int(e["ts"].timestamp()))
        for e in events.to_pylist()
    ]


@pytest.mark.parametrize(("write", "name", "layout", "genres"), LAYOUTS)
def test_each_layout_is_detected_and_parsed_exactly(tmp_path, write, name, layout, genres):
    folder = movielens.detect(write(tmp_path / name))
    dataset = name.lower().removeprefix("ml-")
    assert (folder.layout, folder.dataset) == (layout, dataset)

    events = movielens.read_ratings(folder)
    assert events.schema.field("ts").type == TS
    assert event_rows(events) == expected_events(dataset)  # time order, ties by user then item
    assert set(events["event_type"].to_pylist()) == {"rating"}

    items = movielens.read_items(folder).to_pylist()
    assert [(i["item_id"], i["title"], i["genres"], i["year"]) for i in items] == [
        (item, title, genres(g), year) for item, title, g, year in ITEMS
    ]

    lines = [json.loads(text) for text in movielens.json_lines(events).to_pylist()]
    assert [
        (d["event_id"], d["user_id"], d["item_id"], d["value"], d["ts"]) for d in lines
    ] == expected_events(dataset)


def test_100k_year_falls_back_to_the_release_date(tmp_path):
    folder = write_100k(tmp_path / "ml-100k")
    flags = "|".join(["0"] * 8 + ["1"] + ["0"] * 10)
    with open(folder / "u.item", "ab") as out:
        out.write(f"6|Untitled Film|01-Jan-1996||http://x|{flags}\n".encode("latin-1"))
    items = movielens.read_items(movielens.detect(folder)).to_pylist()
    assert items[-1] == {"item_id": "6", "title": "Untitled Film", "genres": ["Drama"], "year": 1996}


def test_dataset_name_can_be_chosen_and_is_sanitised(tmp_path):
    folder = movielens.detect(write_100k(tmp_path / "My Ratings"), dataset=None)
    assert folder.dataset == "my-ratings"
    assert movielens.detect(folder.path, dataset="ML-100K").dataset == "100k"


@pytest.mark.parametrize(
    ("prepare", "message"),
    [
        (lambda f: f.mkdir(), "no MovieLens files in"),
        (lambda f: (f.mkdir(), (f / "u.data").write_text("1\t2\t3\t4\n")), "has u.data but not u.item"),
        (lambda f: write_100k(f) and (f / "u.data").write_text("1\t2\tfive\t881250949\n"), "not a MovieLens"),
        (lambda f: write_100k(f) and (f / "u.data").write_text("1\t2\t3\n"), "not a MovieLens"),
        (
            lambda f: write_csv(f) and (f / "ratings.csv").write_text("user,item,stars,time\n1,2,3,4\n"),
            "expected a header userId,movieId,rating,timestamp",
        ),
    ],
    ids=["empty", "half", "bad-number", "missing-column", "bad-header"],
)
def test_broken_folders_are_explained(tmp_path, prepare, message):
    folder = tmp_path / "ml-x"
    prepare(folder)
    with pytest.raises(RecoError, match=message):
        found = movielens.detect(folder)
        movielens.read_ratings(found)


def test_import_to_bronze_validates_and_a_second_import_adds_nothing(spark, tmp_path):
    folder = write_100k(tmp_path / "ml-100k")
    with open(folder / "u.data", "a") as out:
        out.write("4\t1\t4\t700000000\n")  # 1992: before ingest.min_event_time, so quarantined
    settings = settings_for(tmp_path)
    warehouse = tmp_path / "warehouse"

    first = import_movielens(settings, folder)
    assert (first.ratings, first.items, first.events_written, first.duplicates, first.quarantined) == (
        len(RATINGS) + 1,
        len(ITEMS),
        len(RATINGS),
        0,
        1,
    )
    events = table(warehouse, catalog.EVENTS).sort_by([("ts", "ascending"), ("user_id", "ascending")])
    assert event_rows(events) == expected_events("100k")
    row = events.to_pylist()[0]
    assert row["event_date"] == date(1997, 9, 20) and row["batch_id"] == 0
    assert row["source_file"] == (folder / "u.data").resolve().as_uri()
    quarantine = table(warehouse, catalog.QUARANTINE).to_pylist()
    assert [(q["reason"], q["kind"]) for q in quarantine] == [("bad_timestamp", "events")]
    assert '"ts":700000000' in quarantine[0]["raw"]
    items = table(warehouse, catalog.ITEMS).sort_by("item_id").to_pylist()
    assert [(i["item_id"], i["title"], i["year"]) for i in items] == [(i, t, y) for i, t, _, y in ITEMS]

    second = import_movielens(settings, folder)
    assert (second.events_written, second.duplicates, second.quarantined) == (0, len(RATINGS), 1)
    assert table(warehouse, catalog.EVENTS).num_rows == len(RATINGS)
    assert table(warehouse, catalog.ITEMS).num_rows == len(ITEMS)
    metrics = table(warehouse, catalog.INGEST_METRICS).sort_by("batch_id").to_pylist()
    assert [(m["query_name"], m["batch_id"], m["events_written"], m["duplicates"]) for m in metrics] == [
        (import_app_id("100k"), 0, len(RATINGS), 0),
        (import_app_id("100k"), 1, 0, len(RATINGS)),
    ]


def test_import_to_bronze_is_refused_while_ingest_holds_the_warehouse(tmp_path):
    settings = settings_for(tmp_path)
    folder = write_100k(tmp_path / "ml-100k")
    busy = pytest.raises(BusyError, match=r"already running on this warehouse \(pid \d+")
    with exclusive_lock(Warehouse(settings.warehouse).lock("ingest"), "reco ingest"), busy:
        import_movielens(settings, folder)
    assert not (tmp_path / "warehouse" / catalog.ITEMS.name).exists()  # nothing half-imported


def test_import_to_landing_then_ingest_gives_the_same_rows(spark, tmp_path):
    folder = write_csv(tmp_path / "ml-latest-small")
    settings = settings_for(tmp_path, **{"data.file_events": 4})
    report = import_movielens(settings, folder, to="landing")
    names = [p.split("/")[-1] for p in report.files]
    assert names == ["ml-latest-small-000000.jsonl", "ml-latest-small-000001.jsonl"]
    landed = (tmp_path / "landing" / "events").iterdir()
    assert sorted(p.name for p in landed) == names  # no temp files left behind

    summary = run_ingest(settings, once=True)
    assert summary.totals()["events_written"] == len(RATINGS)
    events = table(tmp_path / "warehouse", catalog.EVENTS).sort_by(
        [("ts", "ascending"), ("user_id", "ascending")]
    )
    assert event_rows(events) == expected_events("latest-small")
    assert table(tmp_path / "warehouse", catalog.ITEMS).num_rows == len(ITEMS)

    # the bronze route builds the same ids, so it finds every row already there
    again = import_movielens(settings, folder, to="bronze")
    assert (again.events_written, again.duplicates) == (0, len(RATINGS))


def test_real_ml_100k_into_bronze(spark, tmp_path):
    folder = MOVIELENS / "ml-100k"
    if not (folder / "u.data").is_file():
        pytest.skip(f"MovieLens 100k is not at {folder} (see ../shared/datasets/movielens/PROVENANCE.md)")
    settings = settings_for(tmp_path)
    started = time.perf_counter()
    report = import_movielens(settings, folder)
    seconds = time.perf_counter() - started
    assert (report.ratings, report.items, report.events_written, report.quarantined) == (
        100_000,
        1682,
        100_000,
        0,
    )
    events = table(tmp_path / "warehouse", catalog.EVENTS)
    assert events.num_rows == 100_000
    assert pc.count_distinct(events["event_id"]).as_py() == 100_000
    assert pc.count_distinct(events["user_id"]).as_py() == 943
    assert pc.count_distinct(events["item_id"]).as_py() == 1682
    assert pc.min(events["ts"]).as_py() == datetime(1997, 9, 20, 3, 5, 10, tzinfo=UTC)
    assert table(tmp_path / "warehouse", catalog.ITEMS).num_rows == 1682
    print(f"ml-100k import into bronze: {seconds:.1f}s")


def test_real_ml_latest_small_parses():
    folder = MOVIELENS / "ml-latest-small"
    if not (folder / "ratings.csv").is_file():
        pytest.skip(f"MovieLens latest-small is not at {folder}")
    found = movielens.detect(folder)
    events, items = movielens.read_ratings(found), movielens.read_items(found)
    assert (found.layout, events.num_rows, items.num_rows) == ("csv", 100_836, 9742)
    assert pc.count_distinct(events["user_id"]).as_py() == 610
    assert pc.count_distinct(events["item_id"]).as_py() == 9724
    toy = items.filter(pc.equal(items["item_id"], "1")).to_pylist()[0]
    assert (
        toy["genres"] == ["Adventure", "Animation", "Children", "Comedy", "Fantasy"] and toy["year"] == 1995
    )


def test_cli_import_to_landing(tmp_path):
    folder = write_dat(tmp_path / "ml-1m")
    landing, warehouse = tmp_path / "landing", tmp_path / "warehouse"
    result = run_reco(
        "data", "import", "movielens", str(folder), "--to", "landing",
        "--landing", str(landing), "--warehouse", str(warehouse), "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert (report["dataset"], report["ratings"], report["items"], report["to"]) == ("1m", 6, 5, "landing")
    lines = (landing / "events" / "ml-1m-000000.jsonl").read_text().splitlines()
    assert [json.loads(text)["event_id"] for text in lines] == [e[0] for e in expected_events("1m")]
    assert table(warehouse, catalog.ITEMS).num_rows == 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["/no/such/folder"], "error: not a folder: /no/such/folder"),
        (["{tmp}"], "error: no MovieLens files in"),
        (["{tmp}", "--to", "kafka"], "Invalid value for '--to'"),
    ],
)
def test_cli_import_user_mistakes(tmp_path, args, message):
    result = run_reco("data", "import", "movielens", *(a.format(tmp=tmp_path) for a in args))
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    if message.startswith("error:"):
        assert len(result.stderr.strip().splitlines()) == 1
