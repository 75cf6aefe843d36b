"""LiveState.refresh reads only the bronze commits after the versions it last read, and serves the
same interactions as a full read of bronze."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from planted import commit_events, events

from lakehouse.catalog import Warehouse
from recocli.config import load_settings
from recocli.recommend import bronze
from recocli.serve.state import LiveState


def _rows(table: pa.Table) -> list[tuple]:
    return sorted(zip(*(table[c].to_pylist() for c in ("user_id", "item_id", "ts", "weight")), strict=True))


def _same_as_a_full_read(state: LiveState, root: Path) -> None:
    full = bronze.interactions(Warehouse(root), state.settings)
    users = set(full["user_id"].to_pylist())
    assert users == set(state.committed.spans) | set(state.committed.newer)
    for user in users:
        assert _rows(state.interactions_of(user)) == _rows(
            full.filter(pa.compute.equal(full["user_id"], user))
        )


def test_a_refresh_adds_only_the_new_commits_and_rebuilds_once_they_are_a_quarter(tmp_path):
    root = tmp_path / "warehouse"
    commit_events(root, events(4000, seed=1), batch_id=0)
    state = LiveState(load_settings(env={}, overrides={"warehouse": str(root)}))
    state.refresh()
    base = state.committed.table.num_rows
    assert base > 0 and state.committed.newer_rows == 0
    commit_events(root, events(300, seed=2), batch_id=1)
    commit_events(root, events(200, seed=3), batch_id=2)
    state.refresh()
    assert state.committed.table.num_rows == base  # the base was not read again
    assert 0 < state.committed.newer_rows <= 500
    _same_as_a_full_read(state, root)
    commit_events(root, events(2000, seed=4), batch_id=3)
    state.refresh()  # the new rows went past a quarter of the base: still added, then merged next time
    commit_events(root, events(10, seed=5), batch_id=4)
    state.refresh()
    assert state.committed.table.num_rows > base and state.committed.newer_rows < 20
    _same_as_a_full_read(state, root)
