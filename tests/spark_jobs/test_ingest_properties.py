"""Property: whatever mix of good, bad, duplicate and non-UTF-8 lines lands, under whatever file names,
every line is accounted for once and every table stays readable (issue 23). A few examples per run:
each is a real ingest."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from helpers import assert_readable_everywhere, event, table
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lakehouse import catalog
from lakehouse.landing import safe_name
from recocli.config import load_settings
from spark_jobs.ingest import run_ingest

# Every name holds at least one character Spark would glob or fail on.
NAME = st.builds(
    lambda text, odd: f"f{text}{odd}.jsonl",
    st.text(alphabet="ab?*[]{}:\\% é,#", max_size=5),
    st.sampled_from("?*[]{}:\\"),
)
BAD = st.one_of(
    st.binary(min_size=1, max_size=12).map(lambda b: b"\xff" + b.replace(b"\n", b"").replace(b"\r", b"")),
    st.text(max_size=12).map(lambda s: ("x" + s.replace("\n", "").replace("\r", "")).encode()),
    st.sampled_from([b"{'event_id':'q'}", b'{"event_id":"e"}}', b'{"a":1} {"b":2}', b"[]", b"null"]),
)
# A line: ("good", id) or ("bad", bytes); ids repeat to make duplicates; latin-1 ids are not UTF-8.
LINE = st.one_of(
    st.tuples(st.just("good"), st.integers(0, 12)),
    st.tuples(st.just("latin1"), st.integers(0, 3)),
    st.tuples(st.just("bad"), BAD),
)
FILES = st.lists(
    st.tuples(NAME, st.lists(LINE, min_size=0, max_size=8)),
    min_size=1,
    max_size=4,
    unique_by=lambda f: safe_name(f[0]),
)


def _encode(kind: str, value) -> bytes:
    if kind == "good":
        return json.dumps(event(value)).encode()
    if kind == "latin1":  # an id with one latin-1 byte: caf\xe8, caf\xe9, ...
        return json.dumps(event("ID")).encode().replace(b'"eID"', b'"caf' + bytes([0xE8 + value]) + b'"')
    return value


@settings(max_examples=2, deadline=None, suppress_health_check=list(HealthCheck))
@given(files=FILES)
def test_every_line_is_accounted_for_once_and_tables_stay_readable(spark, files):
    with tempfile.TemporaryDirectory() as root:
        warehouse, landing = Path(root) / "warehouse", Path(root) / "landing"
        folder = landing / "events"
        folder.mkdir(parents=True)
        good, bad = set(), 0
        for name, lines in files:
            temp = folder / f".{safe_name(name)}.tmp"
            temp.write_bytes(b"".join(_encode(kind, value) + b"\n" for kind, value in lines))
            os.replace(temp, folder / name)
            good |= {f"e{value}" for kind, value in lines if kind == "good"}
            bad += sum(kind != "good" for kind, _ in lines)
        n_lines = sum(len(lines) for _, lines in files)
        overrides = {"warehouse": str(warehouse), "ingest.landing": str(landing)}
        summary = run_ingest(load_settings(env={}, overrides=overrides), once=True)

        totals = summary.totals()
        assert totals["lines_read"] == n_lines
        assert totals["events_written"] == len(good)
        assert totals["quarantined"] == bad
        assert totals["duplicates"] == n_lines - len(good) - bad
        metrics = table(warehouse, catalog.INGEST_METRICS).to_pylist()
        for m in metrics:
            assert (
                m["lines_read"]
                == m["events_written"] + m["feedback_written"] + m["quarantined"] + m["duplicates"]
            )
        assert sorted(table(warehouse, catalog.EVENTS)["event_id"].to_pylist()) == sorted(good)
        assert_readable_everywhere(warehouse)
