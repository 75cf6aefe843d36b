"""`reco replay`: time order, whole files only, --until, and pacing measured on the real clock."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
from helpers import MOVIELENS, run_reco
from movielens_fixtures import expected_events, write_100k

from lakehouse import catalog, delta
from lakehouse.catalog import Warehouse
from lakehouse.errors import RecoError
from recocli.data.replay import load_events, replay

T0 = datetime(2024, 5, 1, tzinfo=UTC)


def events_table(n: int, step_s: float = 1.0) -> pa.Table:
    rows = [
        {
            "event_id": f"e{k:05d}",
            "user_id": f"u{k % 7}",
            "item_id": f"i{k % 11}",
            "event_type": "view",
            "value": None,
            "ts": T0 + timedelta(seconds=k * step_s),
        }
        for k in range(n)
    ]
    schema = pa.schema(
        [
            catalog.EVENTS.schema.field(c)
            for c in ("event_id", "user_id", "item_id", "event_type", "value", "ts")
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def landed(landing) -> list[dict]:
    files = sorted((landing / "events").iterdir())
    return [json.loads(text) for path in files for text in path.read_text().splitlines()]


def test_movielens_folder_is_replayed_in_time_order_with_stable_ids(tmp_path):
    events, label = load_events(write_100k(tmp_path / "ml-100k"))
    report = replay(events, tmp_path / "landing", batch_events=4, label=label)
    assert (report.events, report.files, label) == (6, 2, "ml-100k")
    names = sorted(p.name for p in (tmp_path / "landing" / "events").iterdir())
    assert len(names) == 2 and all(n.startswith("replay-ml-100k-") for n in names)
    got = landed(tmp_path / "landing")
    expected = expected_events("100k")
    assert [r["event_id"] for r in got] == [e[0] for e in expected]
    first = got[0]
    assert first == {
        "event_id": expected[0][0],
        "user_id": expected[0][1],
        "item_id": expected[0][2],
        "event_type": "rating",
        "value": expected[0][3],
        "ts": datetime.fromtimestamp(expected[0][4], UTC).isoformat().replace("+00:00", "Z"),
    }


def test_until_and_limit(tmp_path):
    events = events_table(100)
    report = replay(events, tmp_path / "a", until=T0 + timedelta(seconds=41))
    assert report.events == 42 and report.last_ts == "2024-05-01T00:00:41Z"
    assert [r["event_id"] for r in landed(tmp_path / "a")] == [f"e{k:05d}" for k in range(42)]
    assert replay(events, tmp_path / "b", limit=5).events == 5
    assert replay(events, tmp_path / "c", until=T0 - timedelta(days=1)).files == 0


def test_rate_pacing_writes_no_event_before_its_time(tmp_path):
    n, rate = 600, 1000.0
    written: list[tuple[int, float]] = []
    count = 0

    def on_file(path, k, last_ts):
        nonlocal count
        count += k
        written.append((count, time.monotonic() - started))

    started = time.monotonic()
    report = replay(events_table(n), tmp_path / "l", rate=rate, flush_every=0.05, on_file=on_file)
    assert report.events == n
    for done, at in written:
        assert at >= (done - 1) / rate - 1e-3, "an event was written before it was due"
    assert (n - 1) / rate <= report.seconds <= (n - 1) / rate + 0.6
    assert report.files >= 5  # one file per flush interval, not one per event nor one in all
    assert report.files <= n / 10


def test_speed_follows_event_time(tmp_path):
    # 20 events 10 s apart (190 s of event time) at 100× real time take 1.9 s
    events = events_table(20, step_s=10.0)
    written: list[tuple[int, float]] = []
    count = 0

    def on_file(path, k, last_ts):
        nonlocal count
        count += k
        written.append((count, time.monotonic() - started))

    started = time.monotonic()
    report = replay(events, tmp_path / "l", speed=100.0, flush_every=0.01, on_file=on_file)
    for done, at in written:
        assert at >= (done - 1) * 10.0 / 100.0 - 1e-3
    assert 1.9 <= report.seconds <= 2.6


def test_only_whole_files_are_ever_visible(tmp_path):
    """A reader polling the folder sees either hidden temp files or complete files, never a part."""
    landing = tmp_path / "landing"
    folder = landing / "events"
    n = 3000
    sightings: dict[str, set[int]] = {}
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            if folder.is_dir():
                for path in folder.iterdir():
                    if path.name.startswith("."):
                        continue
                    try:
                        text = path.read_text()
                    except FileNotFoundError:
                        continue
                    assert text.endswith("\n")
                    lines = text.splitlines()
                    for line in lines:
                        json.loads(line)
                    sightings.setdefault(path.name, set()).add(len(lines))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        report = replay(events_table(n), landing, rate=6000, flush_every=0.02, batch_events=400)
    finally:
        stop.set()
        watcher.join()
    final = {p.name: len(p.read_text().splitlines()) for p in folder.iterdir()}
    assert not [name for name in final if name.startswith(".")], "a temp file was left behind"
    assert sum(final.values()) == n and len(final) == report.files
    assert sightings, "the watcher saw no file"
    for name, counts in sightings.items():
        assert counts == {final[name]}, f"{name} was seen partly written: {counts}"
    assert [r["event_id"] for r in landed(landing)] == [f"e{k:05d}" for k in range(n)]


def test_bronze_events_of_a_warehouse_can_be_replayed(tmp_path):
    rows = [
        {
            "event_id": f"b{k}",
            "user_id": "u1",
            "item_id": f"i{k}",
            "event_type": "click",
            "value": None,
            "ts": T0 + timedelta(minutes=10 - k),  # stored out of time order
            "session_id": "s1",
            "context": [("page", "home")],
            "event_date": (T0 + timedelta(minutes=10 - k)).date(),
            "ingested_at": T0,
            "batch_id": 0,
            "source_file": "file:/x",
        }
        for k in range(3)
    ]
    warehouse = Warehouse(tmp_path / "warehouse")
    delta.append_once(
        warehouse.uri(catalog.EVENTS),
        catalog.EVENTS,
        pa.Table.from_pylist(rows, schema=catalog.EVENTS.schema),
        "t",
        0,
    )
    events, label = load_events(tmp_path / "warehouse")
    replay(events, tmp_path / "landing", label=label, retime=True)
    got = landed(tmp_path / "landing")
    assert [r["event_id"] for r in got] == ["b2", "b1", "b0"]
    assert got[0]["context"] == {"page": "home", "original_ts": "2024-05-01T00:08:00Z"}
    assert got[0]["session_id"] == "s1"
    assert datetime.fromisoformat(got[0]["ts"]) > datetime.now(UTC) - timedelta(minutes=5)


def test_pacing_options_are_checked(tmp_path):
    with pytest.raises(RecoError, match="not both"):
        replay(events_table(3), tmp_path, speed=1, rate=1)
    with pytest.raises(RecoError, match="--rate must be positive"):
        replay(events_table(3), tmp_path, rate=0)


def test_cli_replay_and_mistakes(tmp_path):
    folder = MOVIELENS / "ml-100k"
    real = (folder / "u.data").is_file()  # else the fixture: 2 of its events are before --until
    if not real:
        folder = write_100k(tmp_path / "ml-100k")
    landing = tmp_path / "landing"
    result = run_reco(
        "replay", str(folder), "--landing", str(landing), "--rate", "20000", "--limit", "2000",
        "--until", "1997-10-01T00:00:00Z", "--flush-every", "100ms", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["events"] == len(landed(landing)) == (2000 if real else 2)
    ts = [r["ts"] for r in landed(landing)]
    assert ts == sorted(ts) and ts[-1] <= "1997-10-01T00:00:00Z"

    bad = run_reco("replay", str(folder), "--landing", str(landing), "--until", "tomorrow")
    assert bad.returncode == 2 and "--until must be an ISO-8601 time" in bad.stderr
    assert "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    paced = run_reco("replay", str(folder), "--landing", str(tmp_path / "unused"), "--rate", "0")
    assert paced.returncode == 2 and paced.stderr.strip() == "error: --rate must be positive, got 0"
    assert not paced.stdout and not (tmp_path / "unused").exists(), "checked before anything starts"
    missing = run_reco("replay", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "not a folder" in missing.stderr
    before_all = tmp_path / "before-all"
    nothing = run_reco("replay", str(folder), "--landing", str(before_all), "--until", "1990-01-01T00:00:00Z")
    assert nothing.returncode == 0, nothing.stderr
    assert "replayed nothing: no event in the time range" in nothing.stdout
    assert not list(before_all.rglob("*.jsonl"))


def test_replay_resumes_from_the_warehouse_s_newest_event_or_a_given_time(tmp_path):
    from planted import commit_events

    folder = write_100k(tmp_path / "ml-100k")
    events, _ = load_events(folder)
    half = events.num_rows // 2
    warehouse = tmp_path / "warehouse"
    commit_events(warehouse, events.slice(0, half), 0)
    newest = events["ts"][half - 1].as_py()
    landing = tmp_path / "landing"
    resumed = run_reco(
        "replay", str(folder), "--landing", str(landing), "--resume", "-w", str(warehouse), "--json"
    )
    assert resumed.returncode == 0, resumed.stderr
    rows = landed(landing)
    assert min(r["ts"] for r in rows) == newest.isoformat().replace("+00:00", "Z")
    ingested = set(events.slice(0, half)["event_id"].to_pylist())
    everything = set(events["event_id"].to_pylist())
    assert everything - ingested <= {r["event_id"] for r in rows}, "no event lost between the two"
    assert len(rows) < events.num_rows, "the ingested part is not replayed again (but for ties)"

    since = events["ts"][events.num_rows - 3].as_py()
    later = tmp_path / "later"
    stamp = since.isoformat().replace("+00:00", "Z")
    done = run_reco("replay", str(folder), "--landing", str(later), "--since", stamp, "--json")
    assert done.returncode == 0, done.stderr
    assert all(r["ts"] >= stamp for r in landed(later)) and len(landed(later)) >= 3
    both = run_reco("replay", str(folder), "--since", stamp, "--resume", "-w", str(warehouse))
    assert both.returncode == 2 and "not both" in both.stderr
    typo = run_reco("replay", str(folder), "--resume", "-w", str(tmp_path / "typo"))
    assert typo.returncode == 2 and "no warehouse" in typo.stderr
