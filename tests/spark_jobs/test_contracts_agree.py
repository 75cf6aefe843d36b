"""The two checkers of the ingest contracts agree: spark_jobs.validate (what `reco ingest` applies)
and lakehouse.contracts.validate_record (what `reco serve` applies at the door), on the same lines."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from helpers import event, feedback

from lakehouse.contracts import EVENTS, FEEDBACK, validate_record
from spark_jobs.validate import Bounds, validate

RECORDS = [
    event(1),
    event(2, user_id=42, item_id=7.5, value="4.5", context={"page": "home", "n": 3}),
    event(3, event_type=" Click "),
    event(4, ts=1714557600),
    event(5, ts="1714557600000"),
    event(6, ts="2024-05-01 10:00:00"),
    event(7, ts="2024-05-01T12:00:00+02:00"),
    event(8, ts="2024-05-01"),
    event(9, user_id="  "),
    event(10, user_id=None),
    event(11, item_id={"a": 1}),
    event(12, item_id="[x"),
    event(13, value="high"),
    event(14, context=[1]),
    event(15, context="home"),
    event(16, event_type="teleport"),
    event(17, ts="yesterday"),
    event(18, ts="1990-01-01T00:00:00Z"),
    event(19, ts=1e15),
    event(20, session_id=5, value=True),
    {k: v for k, v in event(21).items() if k != "ts"},
    feedback(1),
    feedback(2, position="2.5"),
    feedback(3, position=2**31),
    feedback(4, model_version="v1"),
    feedback(5, action="view"),
    feedback(6, rec_id=""),
    feedback(7, value="NaN"),
]


def test_spark_and_python_checkers_give_the_same_reason(spark):
    bounds = Bounds(datetime(1995, 1, 1, tzinfo=UTC), 86400.0, 65536)
    now = datetime.now(UTC)
    lines = [(json.dumps(r), "file:/x.jsonl") for r in RECORDS]
    frame = spark.createDataFrame(lines, "value string, source_file string")
    for contract in (EVENTS, FEEDBACK):
        mine = [r for r in RECORDS if ("rec_id" in r) == (contract is FEEDBACK)]
        got = validate(frame.filter(frame.value.isin([json.dumps(r) for r in mine])), contract, bounds, now)
        spark_reasons = {row["raw"] or row["event_id"]: row["reason"] for row in got.collect()}
        for record in mine:
            key = json.dumps(record) if json.dumps(record) in spark_reasons else record["event_id"]
            python = validate_record(record, contract, bounds.min_ts, now + timedelta(days=1), 65536)
            assert python.reason == spark_reasons[key], record
