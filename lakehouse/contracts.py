"""The event contracts (schema version 1; DESIGN.md): fields, their types, which are required, and the
allowed event types / feedback actions. One definition for every path events come in by: Spark
ingest and backfills (spark_jobs.validate applies it) and anything validating events without Spark.
The rules that apply it are documented in docs/ingest.md ("Inputs: what ingest accepts and refuses")."""

from __future__ import annotations

from dataclasses import dataclass

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
