"""Arrow schemas of the warehouse tables (schema version 1 of the event contracts in DESIGN.md)."""

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")
CONTEXT = pa.map_(pa.string(), pa.string())

EVENT_TYPES = ("view", "click", "add_to_cart", "purchase", "rating", "like", "dislike")
FEEDBACK_ACTIONS = ("impression", "click", "like", "dislike", "dismiss", "rating", "purchase")
# How a served list was chosen (gold/recommendations.strategy): the model's ranker; the popular list
# for users the model knows nothing about; the same popular list for held-out users the model knows
# (an A/B control, compared with `model` lists of like users, not with new users, who take popular
# items far more).
MODEL, POPULAR, HOLDOUT = "model", "popular", "holdout"

# Columns every ingested row carries besides its contract fields.
_LINEAGE = [
    pa.field("event_date", pa.date32(), nullable=False),
    pa.field("ingested_at", TS, nullable=False),
    pa.field("batch_id", pa.int64(), nullable=False),
    pa.field("source_file", pa.string(), nullable=False),
]

EVENTS = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("event_type", pa.string(), nullable=False),
        pa.field("value", pa.float64()),
        pa.field("ts", TS, nullable=False),
        pa.field("session_id", pa.string()),
        pa.field("context", CONTEXT),
        *_LINEAGE,
    ]
)

FEEDBACK = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("rec_id", pa.string(), nullable=False),
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("action", pa.string(), nullable=False),
        pa.field("value", pa.float64()),
        pa.field("position", pa.int32()),
        pa.field("model_version", pa.int64()),
        pa.field("ts", TS, nullable=False),
        *_LINEAGE,
    ]
)

QUARANTINE = pa.schema(
    [
        pa.field("raw", pa.string(), nullable=False),
        pa.field("source_file", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("batch_id", pa.int64(), nullable=False),
        pa.field("ingested_at", TS, nullable=False),
    ]
)

INGEST_METRICS = pa.schema(
    [
        pa.field("query_name", pa.string(), nullable=False),
        pa.field("batch_id", pa.int64(), nullable=False),
        pa.field("started_at", TS, nullable=False),
        pa.field("lines_read", pa.int64(), nullable=False),
        pa.field("events_written", pa.int64(), nullable=False),
        pa.field("feedback_written", pa.int64(), nullable=False),
        pa.field("quarantined", pa.int64(), nullable=False),
        pa.field("duplicates", pa.int64(), nullable=False),
        pa.field("duration_s", pa.float64(), nullable=False),
        pa.field("lag_s", pa.float64()),
        pa.field("writer", pa.string(), nullable=False),
        pa.field("files", pa.list_(pa.string()), nullable=False),
        # Added after the first release (nullable: rows of older warehouses read null; delta.ensure_table
        # adds it to an existing table).
        pa.field("refused", pa.list_(pa.string())),
    ]
)

RECOMMENDATIONS = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("rec_id", pa.string(), nullable=False),
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("rank", pa.int32(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("score", pa.float64(), nullable=False),
        pa.field("model_version", pa.int64()),
        pa.field("strategy", pa.string(), nullable=False),  # MODEL | POPULAR | HOLDOUT
        pa.field("generated_at", TS, nullable=False),
    ]
)

ITEMS = pa.schema(
    [
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("title", pa.string()),
        pa.field("genres", pa.list_(pa.string())),
        pa.field("year", pa.int32()),
    ]
)

# Items nobody is recommended (withdrawn, out of stock, unsafe).
BLOCKLIST = pa.schema(
    [
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("reason", pa.string()),
    ]
)
