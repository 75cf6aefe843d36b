"""The duplicate mask against a real Delta table: ids already there, repeats within a batch, chunks."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pyarrow as pa

from lakehouse import catalog, delta
from spark_jobs.dedup import SeenIds


def _events(ids: list[str], batch_id: int) -> pa.Table:
    now = datetime.now(UTC)
    row = {"user_id": "u", "item_id": "i", "event_type": "view", "ts": now, "event_date": date.today()}
    lineage = {"ingested_at": now, "batch_id": batch_id, "source_file": "f"}
    rows = [{"event_id": event_id, **row, **lineage} for event_id in ids]
    return pa.Table.from_pylist(rows, schema=catalog.EVENTS.schema)


def test_first_sightings_drops_known_ids_and_later_repeats(tmp_path):
    uri = str(tmp_path / "events")
    delta.append_once(uri, catalog.EVENTS, _events(["a", "b"], 0), "q", 0)
    seen = SeenIds(uri, "q")
    batch = pa.chunked_array([["a", "c", "d", "c"], ["e", "b", "d", "f", "a"]])
    mask = seen.first_sightings(batch, 1).tolist()
    assert mask == [False, True, True, False, True, False, False, True, False]
    # the new ids count as known from the next batch on
    assert seen.first_sightings(pa.chunked_array([["c", "g", "g", "f", "h"]]), 2).tolist() == [
        False,
        True,
        False,
        False,
        True,
    ]


def test_ids_of_a_batch_that_was_never_committed_are_forgotten(tmp_path):
    uri = str(tmp_path / "events")
    delta.append_once(uri, catalog.EVENTS, _events(["a"], 0), "q", 0)
    seen = SeenIds(uri, "q")
    assert seen.first_sightings(pa.chunked_array([["x", "a", "y"]]), 1).tolist() == [True, False, True]
    # the batch failed before its rows were written, so Spark runs it again
    seen.forget()
    assert seen.first_sightings(pa.chunked_array([["x", "y", "x", "a"]]), 1).tolist() == [
        True,
        True,
        False,
        False,
    ]


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
    replay = SeenIds(uri, "q").first_sightings(pa.chunked_array([["z", "b", "c", "y", "a", "d"]]), 1)
    assert replay.tolist() == [False, True, True, False, False, True]
