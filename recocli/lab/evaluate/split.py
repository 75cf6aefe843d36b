"""How evaluation data is cut: leave-last-out per user, and prequential windows over event time.

Both work on interaction tables (recocli.training.interactions.SCHEMA) in time order. Ties in time
keep the order given, so a split is deterministic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from lakehouse.errors import RecoError
from lakehouse.settings import parse_duration


@dataclass
class LooSplit:
    """train: every interaction of a user before their validation item (all of a user with fewer
    than `min_positives` positives); val, test: one positive per user — the one before the last,
    and the last. heldout: every interaction of a tested user after the validation item (the test
    item, and e.g. low ratings around it): the held-out ratings for RMSE/MAE. None of it trains."""

    train: pa.Table
    val: pa.Table
    test: pa.Table
    heldout: pa.Table


def _user_time_order(interactions: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """(row order by user, then time, then position; user codes in that order)."""
    users = interactions["user_id"].combine_chunks().dictionary_encode()
    codes = users.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    ts = interactions["ts"].cast(pa.int64()).to_numpy()
    order = np.lexsort((np.arange(len(codes)), ts, codes))
    return order, codes[order]


def loo_split(interactions: pa.Table, min_positives: int = 3) -> LooSplit:
    """Leave-last-out: per user (events by time), the last positive is the test item, the positive
    before it the validation item, everything before that trains. No test interaction is in train."""
    if min_positives < 3:
        raise ValueError("leave-last-out needs at least 3 positives per tested user")
    n = interactions.num_rows
    order, users = _user_time_order(interactions)
    positive = interactions["label"].to_numpy()[order] > 0
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]]) if n else np.zeros(0, np.int64)
    ends = np.r_[starts[1:], n] if n else np.zeros(0, np.int64)
    train = np.zeros(n, dtype=bool)
    heldout = np.zeros(n, dtype=bool)
    val_rows, test_rows = [], []
    for a, b in zip(starts, ends, strict=True):
        pos = a + np.flatnonzero(positive[a:b])
        if len(pos) < min_positives:
            train[a:b] = True
            continue
        test_rows.append(pos[-1])
        val_rows.append(pos[-2])
        train[a : pos[-2]] = True
        heldout[pos[-2] + 1 : b] = True
    # Back to the original (time) order.
    take_train = np.sort(order[train])
    take_val = np.sort(order[np.array(val_rows, dtype=np.int64)])
    take_test = np.sort(order[np.array(test_rows, dtype=np.int64)])
    return LooSplit(
        interactions.take(pa.array(take_train)),
        interactions.take(pa.array(take_val)),
        interactions.take(pa.array(take_test)),
        interactions.take(pa.array(np.sort(order[heldout]))),
    )


@dataclass(frozen=True)
class Window:
    """One prequential window: event time [start, end) in µs, rows [lo, hi) of the time-sorted table."""

    index: int
    start: int
    end: int
    lo: int
    hi: int

    @property
    def rows(self) -> int:
        return self.hi - self.lo


_EVENTS = re.compile(r"\s*(\d+)\s*(?:e|ev|events?)?\s*")


def parse_window(text: str) -> tuple[str, float]:
    """'30d', '12h' → ("time", seconds); '5000' or '5000 events' → ("events", 5000)."""
    match = _EVENTS.fullmatch(str(text))
    if match:
        count = int(match.group(1))
        if count < 1:
            raise RecoError("--window must hold at least 1 event")
        return "events", float(count)
    try:
        seconds = parse_duration(text)
    except RecoError:
        raise RecoError(
            f"--window must be a duration of event time (30d, 12h) or a number of events (5000), got {text!r}"
        ) from None
    if seconds <= 0:
        raise RecoError("--window must be longer than 0")
    return "time", seconds


def bootstrap_cut(ts: np.ndarray, fraction: float) -> int:
    """The first row at or after the `fraction` quantile of event time (0.5: the median timestamp);
    rows before it bootstrap the models."""
    if not 0.0 < fraction < 1.0:
        raise RecoError(
            f"--bootstrap must be between 0 and 1 (a share of the events in time), got {fraction}"
        )
    if len(ts) == 0:
        raise RecoError("no interactions to evaluate")
    cut_ts = int(np.quantile(ts, fraction, method="lower"))
    return int(np.searchsorted(ts, cut_ts, side="left"))


def _row_windows(ts: np.ndarray, lo: int, hi: int, size: int) -> list[tuple[int, int]]:
    """Chunks of about `size` rows in [lo, hi); rows sharing a timestamp stay in one chunk."""
    out, a = [], lo
    while a < hi:
        b = min(a + size, hi)
        if b < hi:
            b_same = int(np.searchsorted(ts, ts[b], side="left"))
            b = b_same if b_same > a else int(np.searchsorted(ts, ts[b], side="right"))
        out.append((a, b))
        a = b
    return out


def prequential_windows(ts: np.ndarray, cut: int, window: str) -> list[Window]:
    """Windows after the bootstrap rows [0, cut) of the time-sorted `ts` (µs); empty ones skipped."""
    kind, size = parse_window(window)
    n = len(ts)
    if cut >= n:
        return []
    if kind == "events":
        spans = _row_windows(ts, cut, n, int(size))
        return [
            Window(j, int(ts[a]), int(ts[b]) if b < n else int(ts[-1]) + 1, a, b)
            for j, (a, b) in enumerate(spans)
        ]
    step = max(int(size * 1_000_000), 1)
    start0 = int(ts[cut])
    slot = (ts[cut:] - start0) // step  # window number of each row, ascending
    firsts = cut + np.flatnonzero(np.r_[True, slot[1:] != slot[:-1]])
    lasts = np.r_[firsts[1:], n]
    return [
        Window(
            j, start0 + int(slot[a - cut]) * step, start0 + (int(slot[a - cut]) + 1) * step, int(a), int(b)
        )
        for j, (a, b) in enumerate(zip(firsts, lasts, strict=True))
    ]


def windows_line(windows: list[Window], window: str) -> str:
    """How many windows follow the cut; with one, why updating cannot show in it."""
    line = f"{len(windows)} window{'' if len(windows) == 1 else 's'} of {window} after the cut"
    if len(windows) == 1:
        line += (
            ": every strategy ranks with the bootstrap model in it, so updating cannot show; "
            "a shorter --window gives more"
        )
    return line
