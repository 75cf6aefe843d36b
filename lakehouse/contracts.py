"""The ingest contracts (fields, types, allowed kinds, rejection reasons) and a pure-Python validator.

One definition, two checkers: spark_jobs.validate builds Spark column expressions from these
constants for `reco ingest`; `validate_record` applies the same rules, in the same order, to one
JSON object at the door of `reco serve` (no JVM). A test compares the two on the same lines.

Checks run in this order and the first failure is the reason: oversize, malformed_json,
missing_field:<name>, bad_type:<name>, unknown_event_type, bad_timestamp. A value is checked as
the text Spark's JSON reader gives it: ids may be strings or numbers (a number keeps its text as
written: 1.50 is "1.50"; `loads` parses a request so, and `dumps` lands it as written),
an object or array in a string field is bad_type (a string starting with { or [ is not), and the
strings "NaN"/"Infinity" are no numbers. Ingest also refuses lines that are not UTF-8 (bad_encoding)
or not strict RFC 8259 JSON (malformed_json): a caller parses strictly before validate_record.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from lakehouse.schemas import EVENT_TYPES, FEEDBACK_ACTIONS

STRING, DOUBLE, INT, LONG, MAP, TIMESTAMP = "string", "double", "int", "long", "map", "timestamp"


@dataclass(frozen=True)
class Contract:
    kind: str
    fields: tuple[tuple[str, str, bool], ...]  # (name, type, required), in contract order
    type_field: str
    allowed_types: tuple[str, ...]


EVENTS = Contract(
    kind="events",
    fields=(
        ("event_id", STRING, True),
        ("user_id", STRING, True),
        ("item_id", STRING, True),
        ("event_type", STRING, True),
        ("value", DOUBLE, False),
        ("ts", TIMESTAMP, True),
        ("session_id", STRING, False),
        ("context", MAP, False),
    ),
    type_field="event_type",
    allowed_types=EVENT_TYPES,
)

FEEDBACK = Contract(
    kind="feedback",
    fields=(
        ("event_id", STRING, True),
        ("rec_id", STRING, True),
        ("user_id", STRING, True),
        ("item_id", STRING, True),
        ("action", STRING, True),
        ("value", DOUBLE, False),
        ("position", INT, False),
        ("model_version", LONG, False),
        ("ts", TIMESTAMP, True),
    ),
    type_field="action",
    allowed_types=FEEDBACK_ACTIONS,
)

CONTRACTS = {c.kind: c for c in (EVENTS, FEEDBACK)}

# Epoch numbers at or above this many (in absolute value) are milliseconds, below it seconds; at or
# above EPOCH_LIMIT they are no time at all.
EPOCH_MS_FROM, EPOCH_LIMIT = 1e11, 1e14
_INT_RANGES = {INT: (-(2**31), 2**31 - 1), LONG: (-(2**63), 2**63 - 1)}
_ISO = re.compile(
    r"(\d{4})(?:-(\d{1,2})(?:-(\d{1,2})(?:[T ](\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d{1,9}))?)?)?)?)?"
    r"\s*(Z|UTC|[+-]\d{1,2}(?::?\d{2})?)?"
)


@dataclass(frozen=True)
class Checked:
    """One record: `reason` None when valid, then `ts` (UTC) and the normalised kind are set."""

    reason: str | None
    line: str
    ts: datetime | None = None
    kind: str | None = None


class NumberText(str):
    """A JSON number as written (1.50 stays "1.50"): Spark's JSON reader hands a number in a string
    field to `reco ingest` as its text, so the door keeps that text, and lands it as the number it was."""


def _not_json(name: str) -> None:
    """NaN and Infinity are Python's JSON extensions, not JSON: refused as ingest refuses them."""
    raise ValueError(f"{name} is not JSON")


def loads(text: str | bytes) -> Any:
    """Strict RFC 8259 JSON (as ingest parses a line) with every number kept as written (NumberText);
    ValueError when it is not JSON (NaN and Infinity included)."""
    return json.loads(text, parse_float=NumberText, parse_int=NumberText, parse_constant=_not_json)


def dumps(value: Any) -> str:
    """Compact JSON of `value` (not ASCII-escaped), each NumberText written back as the number it was."""
    if isinstance(value, NumberText):
        return str.__str__(value)
    if isinstance(value, dict):
        return (
            "{" + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{dumps(v)}" for k, v in value.items()) + "}"
        )
    if isinstance(value, list):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def raw_text(value: Any) -> str | None:
    """A JSON value as Spark's JSON reader hands it to a string column: strings (and numbers parsed
    by `loads`) as they are, other values as their JSON text (null stays None)."""
    if value is None or isinstance(value, str):
        return str.__str__(value) if isinstance(value, NumberText) else value
    return json.dumps(value, separators=(",", ":"))


def is_blank(text: str) -> bool:
    return text.strip(" ") == ""


def _number(text: str) -> float | None:
    try:
        return float(text.strip())
    except ValueError:
        return None


def _integer(text: str, kind: str) -> int | None:
    text = text.strip()
    if not re.fullmatch(r"[+-]?\d+", text):
        return None
    number = int(text)
    low, high = _INT_RANGES[kind]
    return number if low <= number <= high else None


def parse_timestamp(text: str) -> datetime | None:
    """ISO-8601 text (a date, or date and time, with an optional zone; UTC without one), or epoch
    seconds / milliseconds as number text; None when unparseable. Text with a '-' is a date-time."""
    if "-" not in text:
        number = _number(text)
        if number is None or not math.isfinite(number) or abs(number) >= EPOCH_LIMIT:
            return None
        seconds = number / 1000 if abs(number) >= EPOCH_MS_FROM else number
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)
    match = _ISO.fullmatch(text.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        stamp = datetime(
            int(year), int(month or 1), int(day or 1), int(hour or 0), int(minute or 0), int(second or 0),
            int((fraction or "0")[:6].ljust(6, "0")), tzinfo=_zone(zone),
        )  # fmt: skip
    except ValueError:
        return None
    return stamp.astimezone(UTC)


def _zone(text: str | None) -> timezone:
    if text is None or text in ("Z", "UTC"):
        return UTC
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hours, minutes = (digits, "0") if len(digits) <= 2 else (digits[:-2], digits[-2:])
    return timezone(sign * timedelta(hours=int(hours), minutes=int(minutes)))


def _bad_type(value: Any, text: str, kind: str) -> bool:
    if kind == STRING:
        return isinstance(value, (dict, list))  # a string may start with { or [ ("[bot] crawler")
    if kind == MAP:
        return not isinstance(value, dict)
    if kind == DOUBLE:
        number = _number(text)
        return number is None or not math.isfinite(number)  # the strings "NaN", "Infinity" are not numbers
    if kind in _INT_RANGES:
        return _integer(text, kind) is None
    return False


def validate_record(
    record: Any, contract: Contract, min_ts: datetime, latest_ts: datetime, max_line_bytes: int
) -> Checked:
    """The first rule `record` (a parsed JSON value) breaks, as `reco ingest` would name it, and the
    line it would land as. Event times before `min_ts` or after `latest_ts` are bad_timestamp."""
    line = dumps(record)
    if len(line.encode()) > max_line_bytes:
        return Checked("oversize", line)
    if not isinstance(record, dict):
        return Checked("malformed_json", line)
    texts = {name: raw_text(record.get(name)) for name, _, _ in contract.fields}
    for name, _, required in contract.fields:
        if required and (texts[name] is None or is_blank(texts[name])):
            return Checked(f"missing_field:{name}", line)
    for name, kind, _ in contract.fields:
        if kind != TIMESTAMP and texts[name] is not None and _bad_type(record[name], texts[name], kind):
            return Checked(f"bad_type:{name}", line)
    kind = texts[contract.type_field]
    kind = kind if kind in contract.allowed_types else kind.strip(" ").lower()
    if kind not in contract.allowed_types:
        return Checked("unknown_event_type", line)
    ts = parse_timestamp(texts["ts"])
    if ts is None or ts < min_ts or ts > latest_ts:
        return Checked("bad_timestamp", line)
    return Checked(None, line, ts, kind)
