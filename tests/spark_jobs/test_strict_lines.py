"""Lines as a strict reader takes them (issue 23): bytes that are not UTF-8 are quarantined with their
bytes kept readable, JSON is RFC 8259 only, and ids are kept exactly as written."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import assert_readable_everywhere, event, line, table

from lakehouse import catalog
from recocli.config import load_settings
from spark_jobs.ingest import run_ingest

GOOD = {
    "num-id": '{"event_id":1.50,"user_id":-0,"item_id":7,"event_type":"click","ts":"2024-05-01T10:00:00Z"}',
    "bracket-id": line(event("bracket", user_id="[bot] crawler", item_id="{curly}")),
}
REJECTS = {
    "bad_encoding": [
        b'{"event_id":"caf\xe9","user_id":"u","item_id":"i","event_type":"click","ts":"2024-05-01T10:00:00Z"}',
        b'{"event_id":"caf\xe8","user_id":"u","item_id":"i","event_type":"click","ts":"2024-05-01T10:00:00Z"}',
        b"\xff\xfe{}",
    ],
    "malformed_json": [
        b"{'event_id':'q1','user_id':'u','item_id':'i','event_type':'click','ts':'2024-05-01T10:00:00Z'}",
        (line(event("t1")) + "}").encode(),
        (line(event("t2")) + ' {"x":1}').encode(),
        (line(event("t3")) + "]").encode(),
        (line(event("t4")) + ',{"x":1}').encode(),
        line(event("n1")).replace('"ts"', '"value":NaN,"ts"').encode(),
    ],
    "bad_type:value": [
        line(event("v1", value="NaN")).encode(),
        line(event("v2", value="-Infinity")).encode(),
    ],
    "bad_type:user_id": [
        line(event("o1", user_id={"a": 1})).encode(),
        line(event("o2", user_id=[1])).encode(),
    ],
}


def land_bytes(folder: Path, name: str, lines: list[bytes]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    temp = folder / f".{name}.tmp"
    temp.write_bytes(b"\n".join(lines) + b"\n")
    os.replace(temp, folder / name)


@pytest.fixture(scope="module")
def ingested(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("strict")
    warehouse, landing = root / "warehouse", root / "landing"
    lines = [t.encode() for t in GOOD.values()] + [b for texts in REJECTS.values() for b in texts]
    land_bytes(landing / "events", "a.jsonl", lines)
    settings = load_settings(env={}, overrides={"warehouse": str(warehouse), "ingest.landing": str(landing)})
    return warehouse, run_ingest(settings, once=True)


def test_each_strict_rejection(ingested):
    warehouse, summary = ingested
    rows = table(warehouse, catalog.QUARANTINE).to_pylist()
    got = {}
    for row in rows:
        got.setdefault(row["reason"], []).append(row["raw"])
    expected = {
        reason: sorted(b.decode("utf-8", "backslashreplace") for b in texts)
        for reason, texts in REJECTS.items()
    }
    assert {reason: sorted(raws) for reason, raws in got.items()} == expected
    assert "caf\\xe9" in got["bad_encoding"][0] + got["bad_encoding"][1]
    assert summary.totals()["lines_read"] == len(GOOD) + sum(len(t) for t in REJECTS.values())


def test_ids_are_kept_as_written_and_may_start_with_brackets(ingested):
    warehouse, _ = ingested
    events = {r["event_id"]: r for r in table(warehouse, catalog.EVENTS).to_pylist()}
    assert sorted(events) == ["1.50", "ebracket"]
    assert (events["1.50"]["user_id"], events["1.50"]["item_id"]) == ("-0", "7")
    assert (events["ebracket"]["user_id"], events["ebracket"]["item_id"]) == ("[bot] crawler", "{curly}")


def test_every_table_stays_readable_by_polars_duckdb_and_pyarrow(ingested):
    warehouse, _ = ingested
    for rows in assert_readable_everywhere(warehouse):
        json.dumps(rows, default=str)
