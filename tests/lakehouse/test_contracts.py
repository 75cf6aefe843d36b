"""lakehouse.contracts: the pure-Python checker `reco serve` applies at the door."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from helpers import event, feedback

from lakehouse.contracts import EVENTS, FEEDBACK, dumps, loads, parse_timestamp, raw_text, validate_record

MIN = datetime(1995, 1, 1, tzinfo=UTC)
LATEST = datetime.now(UTC) + timedelta(days=1)


def reason(record, contract=EVENTS, max_bytes: int = 65536) -> str | None:
    return validate_record(record, contract, MIN, LATEST, max_bytes).reason


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (event(1), None),
        (event(1, user_id=42, value="4.5", context={"page": "home"}), None),
        (event(1, event_type=" Click "), None),
        (event(1, ts=1714557600), None),
        (event(1, ts="1714557600000"), None),
        (event(1, ts="2024-05-01 10:00:00+02:00"), None),
        ([1, 2], "malformed_json"),
        ("text", "malformed_json"),
        ({k: v for k, v in event(1).items() if k != "item_id"}, "missing_field:item_id"),
        (event(1, user_id="  "), "missing_field:user_id"),
        (event(1, user_id=None), "missing_field:user_id"),
        (event(1, item_id={"a": 1}), "bad_type:item_id"),
        (event(1, item_id=[1]), "bad_type:item_id"),
        (event(1, item_id="[bot] crawler"), None),  # a string may start with [ or { (issue 23)
        (event(1, value="NaN"), "bad_type:value"),
        (event(1, value="-Infinity"), "bad_type:value"),
        (event(1, value="high"), "bad_type:value"),
        (event(1, context=[1]), "bad_type:context"),
        (event(1, event_type="teleport"), "unknown_event_type"),
        (event(1, ts="yesterday"), "bad_timestamp"),
        (event(1, ts="1990-01-01T00:00:00Z"), "bad_timestamp"),
        (event(1, ts=(datetime.now(UTC) + timedelta(days=3)).isoformat()), "bad_timestamp"),
        (event(1, ts=1e15), "bad_timestamp"),
        (feedback(1), None),
        (feedback(1, position="2.5"), "bad_type:position"),
        (feedback(1, model_version=2**63), "bad_type:model_version"),
        (feedback(1, action="view"), "unknown_event_type"),
    ],
)
def test_reasons_follow_the_ingest_order(record, expected):
    contract = FEEDBACK if isinstance(record, dict) and "rec_id" in record else EVENTS
    assert reason(record, contract) == expected


def test_first_failure_wins_and_oversize_comes_first():
    both = event(1, user_id="", event_type="teleport")
    assert reason(both) == "missing_field:user_id"
    assert reason(event(1, context={"pad": "x" * 200}), max_bytes=100) == "oversize"


def test_valid_record_carries_its_line_time_and_normalised_kind():
    checked = validate_record(event(1, event_type="PURCHASE", ts=1714557600500), EVENTS, MIN, LATEST, 65536)
    assert checked.kind == "purchase"
    assert checked.ts == datetime(2024, 5, 1, 10, 0, 0, 500000, tzinfo=UTC)
    assert checked.line.startswith('{"event_id":"e1"')


def test_timestamps():
    assert parse_timestamp("2024-05-01") == datetime(2024, 5, 1, tzinfo=UTC)
    assert parse_timestamp("2024-05-01T10:00:00.123456Z") == datetime(
        2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC
    )
    assert parse_timestamp("2024-05-01T12:00:00+02:00") == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert parse_timestamp("2024-13-01") is None
    assert parse_timestamp("-5") is None  # a '-' makes it date-time text, as in spark_jobs.validate


def test_numbers_keep_their_text_through_loads_and_dumps():
    text = '{"user_id":1.50,"item_id":10,"value":4.50,"context":{"n":[1e2,-0,"x"]},"name":"é"}'
    record = loads(text)
    assert dumps(record) == text
    assert raw_text(record["user_id"]) == "1.50" and type(raw_text(record["user_id"])) is str
    assert validate_record(record, EVENTS, MIN, LATEST, 65536).line == text
    for bad in ('{"value":NaN}', '{"value":Infinity}', '{"value":-Infinity}'):
        with pytest.raises(ValueError):
            loads(bad)
