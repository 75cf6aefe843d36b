"""The evaluation splits: leave-last-out is leak-free (property test), prequential windows tile time."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lakehouse.errors import RecoError
from recocli.lab.evaluate.split import (
    bootstrap_cut,
    loo_split,
    parse_window,
    prequential_windows,
    windows_line,
)
from recocli.training.interactions import make_interactions

rows = st.lists(
    st.tuples(
        st.integers(0, 5),  # user
        st.integers(0, 8),  # item
        st.integers(0, 20),  # ts (seconds): many ties
        st.sampled_from([0, 1, 1, 1]),  # label
    ),
    max_size=80,
)


def _table(data):
    data = sorted(data, key=lambda r: r[2])  # interactions come in time order
    return make_interactions(
        [f"u{r[0]}" for r in data],
        [f"i{r[1]}" for r in data],
        ts=[r[2] * 1_000_000 for r in data],
        label=[r[3] for r in data],
    )


def _keyed(table: pa.Table) -> list[tuple]:
    return list(
        zip(
            table["user_id"].to_pylist(),
            table["item_id"].to_pylist(),
            table["ts"].cast(pa.int64()).to_pylist(),
            table["label"].to_pylist(),
            table["weight"].to_pylist(),
            strict=True,
        )
    )


@settings(max_examples=200, deadline=None)
@given(rows)
def test_leave_last_out_is_leak_free(data):
    table = _table(data)
    # Tag each row with its position so that identical rows stay distinguishable.
    table = table.set_column(3, "weight", pa.array(np.arange(table.num_rows, dtype=np.float32)))
    split = loo_split(table)
    position = {row: n for n, row in enumerate(_keyed(table))}
    train, val, test, held = (
        [position[r] for r in _keyed(t)] for t in (split.train, split.val, split.test, split.heldout)
    )
    # Every row is in at most one part (held out: the test item and the rest after validation).
    parts = train + val + held
    assert len(parts) == len(set(parts))
    assert set(test) <= set(held)
    users = table["user_id"].to_pylist()
    labels = table["label"].to_pylist()
    by_user: dict[str, list[int]] = {}
    for n, user in enumerate(users):
        by_user.setdefault(user, []).append(n)  # time order, ties in the given order
    assert len(test) == len(set(users[n] for n in test)) == len(val)
    for user, mine in by_user.items():
        positives = [n for n in mine if labels[n] == 1]
        user_train = [n for n in train if users[n] == user]
        if len(positives) < 3:
            assert user_train == mine and user not in {users[n] for n in test}
            continue
        t = next(n for n in test if users[n] == user)
        v = next(n for n in val if users[n] == user)
        assert t == positives[-1] and v == positives[-2]
        # Nothing at or after the validation item trains (no future of the user leaks).
        assert all(n < v for n in user_train)
        assert user_train == [n for n in mine if n < v]
        assert sorted(n for n in held if users[n] == user) == [n for n in mine if n > v]


def test_loo_split_keeps_time_order_and_rejects_too_few_positives():
    table = make_interactions(["a"] * 4 + ["b"] * 2, ["1", "2", "3", "4", "1", "2"], ts=[0, 1, 2, 3, 4, 5])
    split = loo_split(table)
    assert split.test["item_id"].to_pylist() == ["4"] and split.val["item_id"].to_pylist() == ["3"]
    assert split.train["item_id"].to_pylist() == ["1", "2", "1", "2"]
    with pytest.raises(ValueError):
        loo_split(table, min_positives=2)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(0, 10_000), min_size=2, max_size=200),
    st.floats(0.05, 0.95),
    st.sampled_from(["7", "30", "1h", "2d", "250s"]),
)
def test_prequential_windows_tile_the_rows_after_the_cut(seconds, fraction, window):
    ts = np.sort(np.array(seconds, dtype=np.int64)) * 1_000_000
    cut = bootstrap_cut(ts, fraction)
    assert 0 <= cut < len(ts)
    assert np.all(ts[:cut] < ts[cut])  # the cut never splits a timestamp
    windows = prequential_windows(ts, cut, window)
    assert windows[0].lo == cut and windows[-1].hi == len(ts)
    for a, b in pairwise(windows):
        assert a.hi == b.lo and a.end <= b.start
    for w in windows:
        assert w.rows > 0
        assert np.all((ts[w.lo : w.hi] >= w.start) & (ts[w.lo : w.hi] < w.end))
        # Rows of one timestamp never straddle two windows.
        assert w.hi == len(ts) or ts[w.hi - 1] < ts[w.hi]


def test_parse_window():
    assert parse_window("30d") == ("time", 30 * 86400)
    assert parse_window("5000") == ("events", 5000)
    assert parse_window("200 events") == ("events", 200)
    for bad in ("soon", "0", "0d"):
        with pytest.raises(RecoError):
            parse_window(bad)
    with pytest.raises(RecoError):
        bootstrap_cut(np.arange(3), 1.5)


def test_median_bootstrap_and_monthly_windows():
    day = 86400 * 1_000_000
    ts = np.arange(100) * day  # one event a day
    cut = bootstrap_cut(ts, 0.5)
    assert cut == 49  # the lower median day
    windows = prequential_windows(ts, cut, "30d")
    assert [w.rows for w in windows] == [30, 21]
    assert windows[0].start == ts[cut] and windows[0].end == ts[cut] + 30 * day
    assert windows_line(windows, "30d") == "2 windows of 30d after the cut"
    one = prequential_windows(ts, cut, "90d")
    assert len(one) == 1 and windows_line(one, "90d").startswith("1 window of 90d after the cut: every")
