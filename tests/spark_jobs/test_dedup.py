"""The duplicate mask against a real Delta table: ids already there, repeats within a batch, chunks,
the replay rule, and the dedup horizon (which dates are read, kept and dropped)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from lakehouse import catalog, delta
from lakehouse.errors import RecoError
from spark_jobs.dedup import SeenIds
from spark_jobs.settings import load_job_settings

NOW = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
TODAY = (NOW - datetime(1970, 1, 1, tzinfo=UTC)).days


def _events(ids: list[str], batch_id: int, ts: datetime = NOW) -> pa.Table:
    row = {"user_id": "u", "item_id": "i", "event_type": "view", "ts": ts, "event_date": ts.date()}
    lineage = {"ingested_at": NOW, "batch_id": batch_id, "source_file": "f"}
    rows = [{"event_id": event_id, **row, **lineage} for event_id in ids]
    return pa.Table.from_pylist(rows, schema=catalog.EVENTS.schema)


def _times(*chunks: list[str], ts: datetime = NOW) -> pa.ChunkedArray:
    return pa.chunked_array(
        [pa.array([ts] * len(chunk), catalog.EVENTS.schema.field("ts").type) for chunk in chunks]
    )


def _sightings(seen: SeenIds, ids: list[str], batch_id: int, ts: datetime = NOW) -> list[bool]:
    return seen.first_sightings(pa.chunked_array([ids]), _times(ids, ts=ts), batch_id).tolist()


def test_first_sightings_drops_known_ids_and_later_repeats(tmp_path):
    uri = str(tmp_path / "events")
    delta.append_once(uri, catalog.EVENTS, _events(["a", "b"], 0), "q", 0)
    seen = SeenIds(uri, "q", horizon=7)
    chunks = [["a", "c", "d", "c"], ["e", "b", "d", "f", "a"]]
    mask = seen.first_sightings(pa.chunked_array(chunks), _times(*chunks), 1).tolist()
    assert mask == [False, True, True, False, True, False, False, True, False]
    # the new ids count as known from the next batch on
    assert _sightings(seen, ["c", "g", "g", "f", "h"], 2) == [False, True, False, False, True]


def test_ids_of_a_batch_that_was_never_committed_are_forgotten(tmp_path):
    uri = str(tmp_path / "events")
    delta.append_once(uri, catalog.EVENTS, _events(["a"], 0), "q", 0)
    seen = SeenIds(uri, "q", horizon=7)
    assert _sightings(seen, ["x", "a", "y"], 1) == [True, False, True]
    # the batch failed before its rows were written, so Spark runs it again
    seen.forget()
    assert _sightings(seen, ["x", "y", "x", "a"], 1) == [True, True, False, False]


def test_a_replay_still_knows_ids_another_app_wrote_under_the_same_batch_id(tmp_path):
    """An import (its own app id, batch ids from 0 too) wrote "z" as its batch 1, then ingest committed
    its batch 1 and crashed before Spark recorded it: the replay of batch 1 leaves out only ingest's
    own rows, so "z" is still a duplicate."""
    uri = str(tmp_path / "events")
    delta.append_once(uri, catalog.EVENTS, _events(["a"], 0), "q", 0)
    delta.append_once(uri, catalog.EVENTS, _events(["z"], 1), "import", 1)
    delta.append_once(uri, catalog.EVENTS, _events(["b", "c"], 1), "q", 1)
    delta.append_once(uri, catalog.EVENTS, _events(["y"], 2), "import", 2)

    assert [delta.commit_of(uri, "q", n) for n in (0, 1, 2)] == [1, 3, None]
    replay = _sightings(SeenIds(uri, "q", horizon=7), ["z", "b", "c", "y", "a", "d"], 1)
    assert replay == [False, True, True, False, False, True]


def _history(uri: str, days: int) -> None:
    """One event a day, "d<age>", for the last `days` days, in one commit."""
    rows = [_events([f"d{age}"], 0, NOW - timedelta(days=age)) for age in range(days)]
    delta.append_once(uri, catalog.EVENTS, pa.concat_tables(rows), "import", 0)


def test_only_the_dates_within_the_horizon_are_read_and_kept(tmp_path):
    uri = str(tmp_path / "events")
    _history(uri, 60)
    seen = SeenIds(uri, "q", horizon=7)
    assert _sightings(seen, ["d0", "d7", "new"], 0) == [False, False, True]
    assert seen.loaded_days == set(range(TODAY - 7, TODAY + 8))
    assert len(seen) == 8 + 1  # d0..d7 and "new", not the 60 days of history
    # the next day moves the horizon: day -7 is dropped, day +8 read
    assert _sightings(seen, ["d0", "x"], 1, ts=NOW + timedelta(days=1)) == [False, True]
    assert min(seen.loaded_days) == TODAY - 6 and "d7" not in seen


def test_a_late_duplicate_is_dropped_and_its_dates_are_dropped_after_its_batch(tmp_path):
    """A resend of an event 40 days old (same id, same time) is judged against its own dates, read for
    that batch only: it is a duplicate. The old dates do not stay in memory."""
    uri = str(tmp_path / "events")
    _history(uri, 60)
    seen = SeenIds(uri, "q", horizon=7)
    assert _sightings(seen, ["fresh"], 0) == [True]
    old = NOW - timedelta(days=40)
    assert _sightings(seen, ["d40", "late"], 1, ts=old) == [False, True]
    assert min(seen.loaded_days) == TODAY - 7 and "d40" not in seen


def test_an_id_again_beyond_the_horizon_is_a_new_event(tmp_path):
    """The same id with an event time more than the horizon away from the known one is written."""
    uri = str(tmp_path / "events")
    _history(uri, 30)
    seen = SeenIds(uri, "q", horizon=7)
    assert _sightings(seen, ["d20", "d5"], 0) == [True, False]  # today: d20 is 20 days off, d5 is 5
    seen = SeenIds(uri, "q", horizon=0)
    assert _sightings(seen, ["d1", "d0"], 0) == [True, False]


def test_a_bad_horizon_is_refused_before_anything_is_created(tmp_path):
    with pytest.raises(RecoError, match="a week"):
        load_job_settings(
            env={},
            overrides={
                "warehouse": str(tmp_path / "warehouse"),
                "ingest.landing": str(tmp_path / "landing"),
                "ingest.dedup_horizon": "a week",
            },
        )
    assert not (tmp_path / "warehouse").exists()
