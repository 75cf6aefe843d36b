"""The validation rules on small DataFrames, compared whole with chispa (the end-to-end checks through
ingest are in test_ingest.py): each line's reason, its typed fields, and which lines keep their text."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from chispa import assert_df_equality

from lakehouse.contracts import EVENTS, FEEDBACK
from spark_jobs.validate import Bounds, validate

BOUNDS = Bounds(min_ts=datetime(1995, 1, 1, tzinfo=UTC), max_future_s=86400.0, max_line_bytes=300)
BATCH = datetime(2026, 1, 1, tzinfo=UTC)
NOON = datetime(2025, 6, 1, 12, tzinfo=UTC)
GOOD_EVENT = {
    "event_id": "e1",
    "user_id": "u1",
    "item_id": "i1",
    "event_type": "click",
    "ts": "2025-06-01T12:00:00Z",
}
GOOD_FEEDBACK = {
    "event_id": "f1", "rec_id": "r1", "user_id": "u1", "item_id": "i1", "action": "click",
    "ts": "2025-06-01T12:00:00Z",
}  # fmt: skip


def line(base: dict, **changes) -> str:
    """`base` as one JSON line, with fields changed (None: left out)."""
    record = {**base, **changes}
    return json.dumps({k: v for k, v in record.items() if v is not None})


def validated(spark, contract, labelled: list[tuple[str, str]]):
    """validate() over (label, line) pairs; the label stands in the source_file column."""
    lines = spark.createDataFrame(
        [(text, label) for label, text in labelled], "value string, source_file string"
    )
    return validate(lines, contract, BOUNDS, BATCH)


def expected(spark, rows: list[tuple], schema: str):
    return spark.createDataFrame(rows, schema)


def test_each_event_line_gets_the_first_failing_rule_as_its_reason(spark):
    cases = [
        ("valid", line(GOOD_EVENT), None, "click"),
        ("type in capitals and spaces", line(GOOD_EVENT, event_type=" Click "), None, "click"),
        ("type in capitals", line(GOOD_EVENT, event_type="PURCHASE"), None, "purchase"),
        ("no user_id", line(GOOD_EVENT, user_id=None), "missing_field:user_id", None),
        ("blank item_id", line(GOOD_EVENT, item_id="  "), "missing_field:item_id", None),
        ("object as user_id", line(GOOD_EVENT, user_id={"id": 1}), "bad_type:user_id", None),
        ("array as item_id", line(GOOD_EVENT, item_id=[1, 2]), "bad_type:item_id", None),
        ("text as value", line(GOOD_EVENT, value="lots"), "bad_type:value", None),
        ("unknown type", line(GOOD_EVENT, event_type="teleport"), "unknown_event_type", None),
        ("unparseable ts", line(GOOD_EVENT, ts="yesterday"), "bad_timestamp", None),
        ("ts before min_ts", line(GOOD_EVENT, ts="1990-01-01T00:00:00Z"), "bad_timestamp", None),
        ("cut short", line(GOOD_EVENT)[:30], "malformed_json", None),
        ("not json", "hello", "malformed_json", None),
        ("oversize", line(GOOD_EVENT, session_id="s" * 300), "oversize", None),
        # The first failing rule wins: a missing field before an unknown type or a bad time.
        (
            "two faults",
            line(GOOD_EVENT, user_id=None, event_type="teleport", ts="x"),
            "missing_field:user_id",
            None,
        ),
        (
            "unknown type before bad time",
            line(GOOD_EVENT, event_type="teleport", ts="x"),
            "unknown_event_type",
            None,
        ),
    ]
    actual = validated(spark, EVENTS, [(label, text) for label, text, _, _ in cases])
    want = expected(
        spark,
        [(label, reason, event_type) for label, _, reason, event_type in cases],
        "source_file string, reason string, event_type string",
    )
    assert_df_equality(
        actual.select("source_file", "reason", "event_type"),
        want,
        ignore_nullable=True,
        ignore_row_order=True,
    )


def test_valid_events_are_typed_whatever_form_their_time_and_ids_take(spark):
    epoch = int(NOON.timestamp())
    cases = [
        ("iso", line(GOOD_EVENT, value=4.5), "e1", 4.5),
        ("iso with offset", line(GOOD_EVENT, ts="2025-06-01T14:00:00+02:00"), "e1", None),
        ("epoch seconds", line(GOOD_EVENT, ts=epoch), "e1", None),
        ("epoch milliseconds", line(GOOD_EVENT, ts=epoch * 1000), "e1", None),
        ("epoch seconds as text", line(GOOD_EVENT, ts=str(epoch)), "e1", None),
        ("numeric id, integer value", line(GOOD_EVENT, event_id=42, value=5), "42", 5.0),
    ]
    actual = validated(spark, EVENTS, [(label, text) for label, text, _, _ in cases])
    want = expected(
        spark,
        [(label, None, event_id, NOON, value) for label, _, event_id, value in cases],
        "source_file string, reason string, event_id string, ts timestamp, value double",
    )
    assert_df_equality(
        actual.select("source_file", "reason", "event_id", "ts", "value"),
        want,
        ignore_nullable=True,
        ignore_row_order=True,
    )


def test_raw_text_is_kept_for_rejected_lines_and_lines_a_batch_may_find_too_late(spark):
    late = line(GOOD_EVENT, ts=(BATCH + timedelta(days=2)).isoformat())
    rejected = line(GOOD_EVENT, event_type="teleport")
    cases = [("valid", line(GOOD_EVENT), None), ("late", late, late), ("rejected", rejected, rejected)]
    actual = validated(spark, EVENTS, [(label, text) for label, text, _ in cases])
    want = expected(spark, [(label, raw) for label, _, raw in cases], "source_file string, raw string")
    assert_df_equality(actual.select("source_file", "raw"), want, ignore_nullable=True, ignore_row_order=True)


def test_feedback_lines_follow_the_same_rules_on_their_own_contract(spark):
    cases = [
        ("valid", line(GOOD_FEEDBACK, position=3, model_version=2), None, "click"),
        ("action in capitals and spaces", line(GOOD_FEEDBACK, action=" Like "), None, "like"),
        ("no rec_id", line(GOOD_FEEDBACK, rec_id=None), "missing_field:rec_id", None),
        ("text as position", line(GOOD_FEEDBACK, position="third"), "bad_type:position", None),
        ("unknown action", line(GOOD_FEEDBACK, action="shrug"), "unknown_event_type", None),
        ("no ts", line(GOOD_FEEDBACK, ts=None), "missing_field:ts", None),
    ]
    actual = validated(spark, FEEDBACK, [(label, text) for label, text, _, _ in cases])
    want = expected(
        spark,
        [(label, "feedback", reason, action) for label, _, reason, action in cases],
        "source_file string, kind string, reason string, action string",
    )
    assert_df_equality(
        actual.select("source_file", "kind", "reason", "action"),
        want,
        ignore_nullable=True,
        ignore_row_order=True,
    )
