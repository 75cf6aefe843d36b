"""Line validation as Spark column expressions: each line becomes a typed row or a rejection reason.

Checks run in this order and the first failure is the reason: bad_encoding (not UTF-8), oversize,
malformed_json (anything but one RFC 8259 object: no single quotes, NaN or trailing text),
missing_field:<name>, bad_type:<name>, unknown_event_type, bad_timestamp. Ids may be JSON strings or
numbers (a number is kept as written: 1.50 stays "1.50"); objects or arrays in a string field are
bad_type, while a string may start with { or [. The strings "NaN" and "Infinity" are not numbers.

The one check left to spark_jobs.batch is an event time too far in the future: its bound moves with
each micro-batch, and a bound that changes per batch would make Spark compile the checks anew for
every batch (Spark writes it into the generated code as a constant).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import reduce

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakehouse.contracts import CONTRACTS as CONTRACTS  # the contracts are lakehouse's, re-exported
from lakehouse.contracts import DOUBLE, EPOCH_LIMIT, EPOCH_MS_FROM, MAP, STRING, TIMESTAMP, Contract
from lakehouse.errors import RecoError
from spark_jobs.settings import IngestSettings

RAW_MAP = T.MapType(T.StringType(), T.StringType())
CORRUPT = "_corrupt_line"
# Strict RFC 8259: Spark's JSON reader otherwise takes single quotes and NaN/Infinity as numbers.
STRICT_JSON = {"allowSingleQuotes": "false", "allowNonNumericNumbers": "false"}


@dataclass(frozen=True)
class Bounds:
    """Accepted event times and line size. The upper time bound moves with each micro-batch's
    own time, which Spark records in its offset log, so a replayed batch decides the same."""

    min_ts: datetime
    max_future_s: float
    max_line_bytes: int

    @classmethod
    def from_settings(cls, ingest: IngestSettings) -> Bounds:
        """The accepted time range and line size configured for ingest (and backfills)."""
        try:
            min_ts = datetime.fromisoformat(ingest.min_event_time)
        except ValueError:
            text = ingest.min_event_time
            raise RecoError(f"ingest.min_event_time is not an ISO-8601 time: {text!r}") from None
        return cls(min_ts, ingest.max_future, ingest.max_line_bytes)

    def latest(self, batch_time: datetime) -> datetime:
        """The latest event time accepted in a batch whose own time is `batch_time`."""
        return batch_time + timedelta(seconds=self.max_future_s)


def parse_timestamp(raw: Column) -> Column:
    """ISO-8601 text, or epoch seconds / milliseconds (as number or text); null when unparseable.

    Text with a '-' is read as a date-time only (the common case: no number parse is attempted)."""
    number = raw.try_cast("double")
    micros = F.when(F.abs(number) >= EPOCH_MS_FROM, number * 1_000).otherwise(number * 1_000_000)
    from_number = F.when(F.abs(number) < EPOCH_LIMIT, F.timestamp_micros(micros.cast("long")))
    return F.when(raw.contains("-"), raw.try_cast("timestamp")).otherwise(from_number)


def _key_then(line: Column, name: str, value_pattern: str) -> Column:
    """The first `"name": <value>` in the line, where the value starts with `value_pattern`
    (the captured text; "" when there is none)."""
    return F.regexp_extract(line, f'"{name}"\\s*:\\s*({value_pattern})', 1)


def _as_written(raw: Column, line: Column, name: str) -> Column:
    """A text field as written in the line: Spark's JSON reader gives a number in a text field as it
    re-prints it (1.50 → "1.5", -0 → "0", 1e3 → "1000.0"), so a number it may have re-printed is taken
    from the line itself (only those: a regex per line would cost every line)."""
    # The cheap tests first: Spark's AND skips the regex for text with no "." or "E" that is not "0".
    reprinted = (raw.contains(".") | raw.contains("E") | (raw == "0")) & raw.rlike("^-?[0-9]")
    written = _key_then(line, name, "-?[0-9][0-9.eE+-]*")
    same = (written != "") & (written.try_cast("double") == raw.try_cast("double"))
    return F.when(reprinted & same, written).otherwise(raw)


def _typed(raw: Column, kind: str, line: Column, name: str) -> Column:
    if kind == STRING:
        return _as_written(raw, line, name)
    if kind == MAP:
        return F.when(_starts_with(raw, "{"), F.from_json(raw, RAW_MAP))
    if kind == TIMESTAMP:
        return parse_timestamp(raw)
    return raw.try_cast(kind)


def _starts_with(raw: Column, *prefixes: str) -> Column:
    """`ltrim(raw)` starts with one of `prefixes`; the trim (a copy) only for text that starts with
    a space."""
    plain = reduce(lambda a, b: a | b, (raw.startswith(p) for p in prefixes))
    trimmed = F.ltrim(raw)
    return plain | (
        raw.startswith(" ") & reduce(lambda a, b: a | b, (trimmed.startswith(p) for p in prefixes))
    )


def is_blank(text: Column) -> Column:
    """Empty or only spaces (`trim(text) == ""`, with the trim only for text that starts with one)."""
    return (text == "") | (text.startswith(" ") & (F.trim(text) == ""))


def _bad_type(raw: Column, typed: Column, kind: str, line: Column, name: str) -> Column:
    if kind == STRING:
        # Spark gives an object or array as its JSON text: tell it from a string by the line itself.
        return _starts_with(raw, "{", "[") & (_key_then(line, name, "[\\[{]") != "")
    if kind == DOUBLE:
        return raw.isNotNull() & (typed.isNull() | F.isnan(typed) | (F.abs(typed) == float("inf")))
    return raw.isNotNull() & typed.isNull()


def _normalized(raw: Column, allowed: tuple[str, ...]) -> Column:
    """lower(trim(raw)), skipped for the common case of a value already in `allowed`."""
    return F.when(raw.isin(*allowed), raw).otherwise(F.lower(F.trim(raw)))


def validate(lines: DataFrame, contract: Contract, bounds: Bounds, earliest_batch: datetime) -> DataFrame:
    """(value, source_file) lines → kind, reason (null when valid), raw, typed fields.

    One `from_json` with every field read as text (an object or array keeps its JSON) parses each line
    once, inside Spark's generated code. The line is parsed as `[line, null]`: a strict parser then
    fails on any text after the object, and an array of two proves the line held exactly one value.
    The checks sit in CASE WHEN branches over that parse, and the costly
    string copies (trim, lower) only run on the rare lines that need them.

    `raw` is kept for rejected lines, and for valid lines that a batch of this run (timed at
    `earliest_batch` or later) may find too far in the future: spark_jobs.batch quarantines those,
    line and all.
    """
    names = [name for name, _, _ in contract.fields]
    schema = T.StructType([T.StructField(n, T.StringType()) for n in [*names, CORRUPT]])
    options = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT, **STRICT_JSON}
    # A line that is not UTF-8 or over the size limit is rejected whatever it holds, so it is never
    # parsed (the bench's 70 KB lines were parsed twice, the line and then its context map).
    utf8 = F.expr("is_valid_utf8(value)")
    fits = F.octet_length("value") <= bounds.max_line_bytes
    wrapped = F.concat(F.lit("["), F.col("value"), F.lit("\n,null]"))
    parsed = lines.select(
        "value",
        "source_file",
        utf8.alias("_utf8"),
        F.when(utf8 & fits, F.from_json(wrapped, T.ArrayType(schema), options)).alias("_array"),
    )
    one_object = (F.size("_array") == 2) & F.col("_array")[1].isNull() & F.col("_array")[0].isNotNull()
    fields = parsed.select(
        "value",
        "source_file",
        "_utf8",
        (~F.coalesce(one_object, F.lit(False)) | F.col("_array")[0][CORRUPT].isNotNull()).alias("_unparsed"),
        *(F.col("_array")[0][n].alias(f"_raw_{n}") for n in names),
    )
    raw = {name: F.col(f"_raw_{name}") for name in names}
    line = F.col("value")
    typed_fields = fields.select(
        "*",
        *(_typed(raw[name], kind, line, name).alias(f"_typed_{name}") for name, kind, _ in contract.fields),
    )
    typed = {name: F.col(f"_typed_{name}") for name in names}

    reason = F.when(~F.col("_utf8"), "bad_encoding").when(~fits, "oversize")
    reason = reason.when(F.col("_unparsed"), "malformed_json")
    for name, _, required in contract.fields:
        if required:
            reason = reason.when(raw[name].isNull() | is_blank(raw[name]), f"missing_field:{name}")
    for name, kind, _ in contract.fields:
        if kind != TIMESTAMP:
            reason = reason.when(_bad_type(raw[name], typed[name], kind, line, name), f"bad_type:{name}")
    event_type = _normalized(raw[contract.type_field], contract.allowed_types)
    reason = reason.when(~event_type.isin(*contract.allowed_types), "unknown_event_type")
    ts = typed["ts"]
    reason = reason.when(ts.isNull() | (ts < F.lit(bounds.min_ts)), "bad_timestamp")
    may_be_late = ts > F.lit(bounds.latest(earliest_batch))

    outputs = {**typed, contract.type_field: event_type}
    valid = F.col("reason").isNull()
    return typed_fields.select("*", reason.alias("reason")).select(
        F.lit(contract.kind).alias("kind"),
        "reason",
        F.when(~valid | may_be_late, line).alias("raw"),
        "source_file",
        *(F.when(valid, column).alias(name) for name, column in outputs.items()),
    )
