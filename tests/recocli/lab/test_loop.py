"""The MovieLens replay loop's feedback: what users really did next answers the served lists."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa

from lakehouse import catalog
from recocli.lab.loop import LoopResult, RoundResult, replay_feedback
from recocli.recommend.run import RunResult


def _served() -> RunResult:
    now = datetime.now(UTC)
    rows = [
        {
            "run_id": "r",
            "rec_id": f"r/{u}",
            "user_id": u,
            "rank": rank,
            "item_id": item,
            "score": 1.0,
            "model_version": 2,
            "strategy": "model",
            "generated_at": now,
        }
        for u, items in (("a", ["1", "2", "3"]), ("b", ["1", "4"]), ("idle", ["1"]))
        for rank, item in enumerate(items, start=1)
    ]
    table = pa.Table.from_pylist(rows, schema=catalog.RECOMMENDATIONS.schema)
    return RunResult("r", table, 2, 3, 3, 0, 0.0)


def test_replay_feedback_impressions_for_active_users_clicks_for_liked_items():
    t = [datetime(1998, 1, 1, h, tzinfo=UTC) for h in (3, 1, 2, 4)]
    window = pa.table(
        {
            "user_id": ["a", "a", "b", "c"],
            "item_id": ["2", "3", "9", "1"],
            "value": [5.0, 2.0, 5.0, 5.0],
            "ts": pa.array(t, pa.timestamp("us", tz="UTC")),
        }
    )
    answers = replay_feedback(_served(), window, threshold=3.5)
    # in the window's event time, not the wall clock's: a's impressions when a first acted, the click
    # when a rated the item
    stamps = {(f["user_id"], f["item_id"], f["action"]): f["ts"] for f in answers}
    assert (
        stamps[("a", "1", "impression")] == t[1].isoformat()
        and stamps[("b", "1", "impression")] == t[2].isoformat()
    )
    assert stamps[("a", "2", "click")] == t[0].isoformat()
    shown = sorted((f["user_id"], f["item_id"]) for f in answers if f["action"] == "impression")
    assert shown == [("a", "1"), ("a", "2"), ("a", "3"), ("b", "1"), ("b", "4")]  # "idle" was not active
    clicks = [(f["user_id"], f["item_id"], f["position"]) for f in answers if f["action"] == "click"]
    assert clicks == [("a", "2", 2)]  # "3" was rated below the threshold
    assert len({f["event_id"] for f in answers}) == len(answers)
    assert all(f["rec_id"] == f"r/{f['user_id']}" and f["model_version"] == 2 for f in answers)


def _round(n: int, model: float, holdout: float, shown: int = 5000) -> RoundResult:
    return RoundResult(n, 10, 10, 0, n + 1, f"r{n}", model, holdout, shown, shown, 1.0, 2.0)


def test_verdict_needs_model_above_holdout_and_no_falling_ctr_beyond_chance():
    rising = LoopResult(
        [_round(0, None, None), _round(1, 0.10, 0.05), _round(2, 0.12, 0.05), _round(3, 0.14, 0.06)]
    )
    assert rising.verdict()["ok"] is True
    falling = LoopResult(
        [_round(0, None, None), _round(1, 0.10, 0.05), _round(2, 0.09, 0.05), _round(3, 0.08, 0.05)]
    )
    assert falling.verdict()["ok"] is False  # 0.10 (5,000 shown) → 0.085 (10,000): about 3 s.e.
    beaten = LoopResult([_round(0, None, None), _round(1, 0.05, 0.10), _round(2, 0.07, 0.10)])
    assert beaten.verdict()["ok"] is False
    # the same small dip on 200 impressions a round is noise, not a broken loop
    noisy = LoopResult([_round(0, None, None)] + [_round(n, c, 0.02, 200) for n, c in ((1, 0.16), (2, 0.15))])
    assert noisy.verdict()["ok"] is True
    # and a model that only ties the holdout within noise does not pass
    tie = LoopResult([_round(0, None, None)] + [_round(n, 0.11, 0.10, 200) for n in (1, 2)])
    assert tie.verdict()["ok"] is False


def test_verdict_judges_like_for_like_and_reports_new_users_apart():
    """Users new to the model take popular items far more; they are served the popular list whatever
    their group, so they are counted apart and do not decide the verdict."""
    rounds = [_round(0, None, None)]
    for n in (1, 2, 3):
        row = _round(n, 0.10, 0.07)
        row.ctr_new, row.impressions_new = 0.30, 5000
        rounds.append(row)
    verdict = LoopResult(rounds).verdict()
    assert verdict["ok"] is True
    assert (verdict["ctr_model"], verdict["ctr_holdout"], verdict["ctr_new_users"]) == (0.1, 0.07, 0.3)
    assert verdict["impressions"] == {"model": 15000, "holdout": 15000, "new_users": 15000}


def test_no_new_users_is_no_figure_rather_than_zero():
    rounds = [_round(0, None, None)] + [_round(n, 0.10, 0.07) for n in (1, 2)]
    verdict = LoopResult(rounds).verdict()
    assert verdict["impressions"]["new_users"] == 0 and verdict["ctr_new_users"] is None
