"""Rows committed after a cursor of Delta versions (the change data feed), as training reads them."""

from __future__ import annotations

import pytest
from deltalake import DeltaTable
from planted import events, to_bronze

from lakehouse import catalog, delta
from lakehouse.errors import RecoError


def commit(uri: str, rows, batch: int) -> int:
    delta.append_once(uri, catalog.EVENTS, to_bronze(rows, catalog.EVENTS, batch), "t", batch)
    return delta.current_version(uri)


def ids(table) -> list[str]:
    return sorted(table["event_id"].to_pylist())


def test_changes_between_versions_are_exactly_the_rows_committed_there(tmp_path):
    uri = str(tmp_path / "events")
    data = events(90, seed=3)
    assert delta.current_version(uri) is None
    versions = [commit(uri, data.slice(30 * n, 30), n) for n in range(3)]
    assert versions == [1, 2, 3]  # version 0 created the empty table
    every = ids(data)
    assert ids(delta.read_changes(uri, -1, 3, ["event_id"])) == every
    assert ids(delta.read_changes(uri, 1, 2, ["event_id"])) == ids(data.slice(30, 30))
    assert ids(delta.read_changes(uri, 1, 3, ["event_id", "user_id"])) == ids(data.slice(30, 60))
    empty = delta.read_changes(uri, 3, 3, ["event_id", "ts"])
    assert empty.num_rows == 0 and empty.column_names == ["event_id", "ts"]
    assert delta.read_version(uri, 2, ["event_id"]).num_rows == 60
    assert sum(b.num_rows for b in delta.version_batches(uri, 2, ["event_id"], batch_rows=25)) == 60
    # Strings come back as plain strings (delta-rs hands out string_view).
    assert str(delta.read_changes(uri, 0, 1, ["user_id"]).schema.field("user_id").type) == "string"


def test_a_compaction_adds_no_rows_to_the_changes(tmp_path):
    uri = str(tmp_path / "events")
    data = events(60, seed=4)
    commit(uri, data.slice(0, 20), 0)
    commit(uri, data.slice(20, 20), 1)
    DeltaTable(uri).optimize.compact()
    compacted = delta.current_version(uri)
    commit(uri, data.slice(40, 20), 2)
    assert compacted == 3 and delta.read_changes(uri, 2, 3, ["event_id"]).num_rows == 0
    assert ids(delta.read_changes(uri, 2, 4, ["event_id"])) == ids(data.slice(40, 20))
    assert ids(delta.read_changes(uri, -1, 4, ["event_id"])) == ids(data)


def test_versions_the_log_does_not_have_are_a_clear_error(tmp_path):
    uri = str(tmp_path / "events")
    commit(uri, events(5), 0)
    with pytest.raises(RecoError, match="reco train --full"):
        delta.read_changes(uri, 4, 9)
