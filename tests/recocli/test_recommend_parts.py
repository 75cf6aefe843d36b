"""The pieces of `reco recommend`: masked top-K, histories, popularity, gold runs, export, report."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from lakehouse import catalog, delta
from lakehouse.catalog import Warehouse
from lakehouse.errors import RecoError
from lakehouse.recommendations import new_run_id, read_run, run_ids, write_run
from recocli.models.padded import PAD
from recocli.models.vocab import Vocabulary
from recocli.recommend.export import export_format, export_rows
from recocli.recommend.history import latest_histories, seen_items
from recocli.recommend.popular import popular_items
from recocli.recommend.report import feedback_report
from recocli.recommend.topk import masked_topk
from recocli.training.interactions import make_interactions


def test_masked_topk_excludes_seen_and_blocked_and_keeps_order():
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.6, 0.5], [0.1, 0.2, 0.3, 0.4, 0.5]])
    exclude = torch.tensor([[0, 2], [4, PAD]])
    blocked = torch.tensor([False, False, False, True, False])
    values, rows = masked_topk(scores, 3, exclude, blocked)
    assert rows[0, :2].tolist() == [1, 4] and values[0, 2] == float("-inf")  # only two left for user 0
    assert rows[1].tolist() == [2, 1, 0]
    assert torch.all(values[:, :-1] >= values[:, 1:])


def test_masked_topk_k_larger_than_catalog_is_cut():
    _, rows = masked_topk(torch.rand(4, 3), 10)
    assert rows.shape == (4, 3)
    assert sorted(rows[0].tolist()) == [0, 1, 2]


def _interactions():
    # u1: i1 (t0), i2 (t1), i3 negative (t2); u2: i2 (t3); u3 only an unknown item
    return make_interactions(
        ["u1", "u1", "u1", "u2", "u3"],
        ["i1", "i2", "i3", "i2", "new"],
        ts=[0, 1_000_000, 2_000_000, 3_000_000, 4_000_000],
        label=[1, 1, 0, 1, 1],
    )


def test_latest_histories_are_time_ordered_left_padded_positives_only():
    items = Vocabulary(["i1", "i2", "i3"])
    hist = latest_histories(_interactions(), ["u2", "u1", "u3", "nobody"], items, max_len=3)
    assert hist.tolist() == [[PAD, PAD, 1], [PAD, 0, 1], [PAD, PAD, PAD], [PAD, PAD, PAD]]
    assert latest_histories(_interactions(), ["u1"], items, max_len=1).tolist() == [[1]]


def test_seen_items_include_negatives():
    items = Vocabulary(["i1", "i2", "i3"])
    seen = seen_items(_interactions(), ["u1", "u2", "nobody"], items)
    assert sorted(x for x in seen[0].tolist() if x != PAD) == [0, 1, 2]
    assert [x for x in seen[1].tolist() if x != PAD] == [1]
    assert all(x == PAD for x in seen[2].tolist())


def test_popular_items_count_positive_weight_in_the_window():
    day = 86_400_000_000
    data = make_interactions(
        ["a", "b", "c", "d", "e", "f"],
        ["old", "x", "y", "y", "x", "y"],
        ts=[0, 10 * day, 10 * day, 11 * day, 11 * day, 11 * day],
        weight=[50, 1, 1, 1, 1, 1],
        label=[1, 1, 1, 1, 1, 0],
    )
    ranked, weights = popular_items(data, window_s=2 * 86_400)
    assert ranked == ["x", "y"] and weights.tolist() == [2.0, 2.0]  # ties by id; negatives ignored
    assert popular_items(data, window_s=20 * 86_400)[0][0] == "old"


def _run_rows(run_id: str, users: int, k: int) -> pa.Table:
    now = datetime.now(UTC)
    rows = [
        {
            "run_id": run_id,
            "rec_id": f"{run_id}/u{u}",
            "user_id": f"u{u}",
            "rank": r,
            "item_id": f"i{r}",
            "score": 1.0 / r,
            "model_version": 1,
            "strategy": "model",
            "generated_at": now,
        }
        for u in range(users)
        for r in range(1, k + 1)
    ]
    return pa.Table.from_pylist(rows, schema=catalog.RECOMMENDATIONS.schema)


def test_gold_runs_append_and_the_newest_is_found(tmp_path):
    warehouse = Warehouse(tmp_path)
    assert read_run(warehouse) is None
    first, second = new_run_id(), new_run_id()
    assert first < second
    write_run(warehouse, _run_rows(first, 3, 2))
    write_run(warehouse, _run_rows(second, 4, 2))
    assert run_ids(warehouse) == [first, second]
    newest = read_run(warehouse)
    assert newest.num_rows == 8 and set(newest["run_id"].to_pylist()) == {second}
    assert read_run(warehouse, first).num_rows == 6


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_export_round_trips(tmp_path, fmt):
    rows = _run_rows(new_run_id(), 2, 3)
    path = tmp_path / f"recs.{fmt}"
    export_rows(rows, path, export_format(path, None))
    if fmt == "parquet":
        back = pq.read_table(path)
        assert back.equals(rows)
    elif fmt == "csv":
        import pyarrow.csv as pacsv

        back = pacsv.read_csv(path)
        assert back["user_id"].to_pylist() == rows["user_id"].to_pylist()
        assert back["rank"].to_pylist() == rows["rank"].to_pylist()
        assert back["score"].to_pylist() == pytest.approx(rows["score"].to_pylist())
    else:
        back = [json.loads(t) for t in path.read_text().splitlines()]
        assert [(r["user_id"], r["rank"], r["item_id"]) for r in back] == [
            (r["user_id"], r["rank"], r["item_id"]) for r in rows.to_pylist()
        ]
        assert datetime.fromisoformat(back[0]["generated_at"]) == rows["generated_at"][0].as_py()
    assert not list(tmp_path.glob(".*.tmp"))


def test_export_format_must_be_known(tmp_path):
    with pytest.raises(RecoError, match="--format"):
        export_format(tmp_path / "recs.xlsx", None)


def test_feedback_report_ctr_per_variant_and_day(tmp_path):
    warehouse = Warehouse(tmp_path)
    run = new_run_id()
    gold = _run_rows(run, 2, 3)
    popular = gold.slice(0, 3).to_pylist()
    for r in popular:
        r.update(user_id="cold", rec_id=f"{run}/cold", strategy="popular", model_version=None)
    held = gold.slice(0, 3).to_pylist()  # a held-out user the model knows: the A/B control, apart
    for r in held:
        r.update(user_id="held", rec_id=f"{run}/held", strategy="holdout", model_version=None)
    popular += held
    write_run(warehouse, pa.concat_tables([gold, pa.Table.from_pylist(popular, schema=gold.schema)]))
    day1, day2 = datetime(2024, 5, 1, 10, tzinfo=UTC), datetime(2024, 5, 2, 10, tzinfo=UTC)
    feedback = []

    def add(rec_user, item, action, ts):
        feedback.append(
            {
                "event_id": f"f{len(feedback)}",
                "rec_id": f"{run}/{rec_user}",
                "user_id": rec_user,
                "item_id": item,
                "action": action,
                "value": None,
                "position": 1,
                "model_version": 1,
                "ts": ts,
                "event_date": ts.date(),
                "ingested_at": ts,
                "batch_id": 0,
                "source_file": "t",
            }
        )

    for item in ("i1", "i2", "i3", "i1"):
        add("u0", item, "impression", day1)
    add("u0", "i1", "click", day1)
    add("u0", "i2", "like", day1)
    for item in ("i1", "i2"):
        add("u1", item, "impression", day2)
    add("u1", "i2", "click", day2)
    add("u1", "i2", "click", day2)
    add("cold", "i1", "impression", day2)
    add("cold", "i1", "dislike", day2)
    add("held", "i1", "impression", day2)
    add("held", "i2", "impression", day2)
    add("held", "i2", "click", day2)
    delta.append_once(
        str(tmp_path / "bronze/feedback"),
        catalog.FEEDBACK,
        pa.Table.from_pylist(feedback, schema=catalog.FEEDBACK.schema),
        "t",
        0,
    )
    events = [
        {
            "event_id": f"e{i}",
            "user_id": "u",
            "item_id": f"i{i}",
            "event_type": "view",
            "value": None,
            "ts": day1,
            "session_id": None,
            "context": None,
            "event_date": date(2024, 5, 1),
            "ingested_at": day1,
            "batch_id": 0,
            "source_file": "t",
        }
        for i in range(1, 11)
    ]
    delta.append_once(
        str(tmp_path / "bronze/events"),
        catalog.EVENTS,
        pa.Table.from_pylist(events, schema=catalog.EVENTS.schema),
        "t",
        0,
    )

    report = {(r["variant"], r["day"]): r for r in feedback_report(warehouse)}
    assert set(report) == {
        ("v1", "2024-05-01"),
        ("v1", "2024-05-02"),
        ("popular", "2024-05-02"),
        ("holdout", "2024-05-02"),
    }
    first = report[("v1", "2024-05-01")]
    assert (first["impressions"], first["clicks"]) == (4, 1)
    assert first["ctr"] == 0.25 and first["like_rate"] == 0.25 and first["dislike_rate"] == 0.0
    assert first["coverage"] == pytest.approx(3 / 10)
    assert report[("v1", "2024-05-02")]["ctr"] == 1.0
    assert report[("popular", "2024-05-02")]["dislike_rate"] == 1.0
    assert report[("popular", "2024-05-02")]["impressions"] == 1
    assert (report[("holdout", "2024-05-02")]["impressions"], report[("holdout", "2024-05-02")]["ctr"]) == (
        2,
        0.5,
    )
