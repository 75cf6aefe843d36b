"""`reco recommend` end to end: real Spark ingest, real Lightning training, real Delta gold runs."""

from __future__ import annotations

import dataclasses
import json
import shutil
import threading
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from helpers import Process, event, reco_cmd, run_reco

from lakehouse import catalog, delta
from lakehouse.catalog import Warehouse
from lakehouse.errors import RecoError
from lakehouse.landing import write_landing_file
from lakehouse.recommendations import read_latest, read_run, run_ids
from lakehouse.registry import ModelRegistry
from recocli.config import load_settings
from recocli.data.synthetic import World, generate_lines
from recocli.recommend.bronze import interactions as read_interactions
from recocli.recommend.run import Request, in_holdout, publish, recommend
from recocli.training.incremental import WarehouseTrainer
from spark_jobs.ingest import run_ingest

WORLD = World(users=60, items=120, clusters=6)
START = datetime.now(UTC) - timedelta(days=3)


def _settings(root, **overrides):
    return load_settings(
        env={},
        overrides={
            "warehouse": str(root / "warehouse"),
            "ingest.landing": str(root / "landing"),
            "train.sasrec.epochs": 3,
            "train.sasrec.val_users": 30,
            "train.sasrec.weight_decay": 0.0,
            "model.sasrec.dim": 32,
            **overrides,
        },
    )


@pytest.fixture(scope="module")
def trained(spark, tmp_path_factory):
    """A warehouse with ingested generated events and a full-trained sasrec (version 1)."""
    root = tmp_path_factory.mktemp("recommend")
    settings = _settings(root)
    lines, _ = generate_lines(3000, WORLD, seed=5, start=START, span=timedelta(days=2), feedback_share=0.0)
    write_landing_file(root / "landing", "events", "history.jsonl", lines["events"])
    run_ingest(settings, once=True)
    result = WarehouseTrainer(settings, progress=False).run(full=True)
    assert result.version == 1
    return root, settings


def _lists(rows: pa.Table) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in rows.to_pylist():
        out.setdefault(row["user_id"], []).append(row)
    return out


def test_lists_are_ranked_unique_and_leave_out_seen_items(trained):
    root, settings = trained
    result = recommend(settings, Request(k=10))
    lists = _lists(result.rows)
    assert len(lists) == WORLD.users and result.model_users == WORLD.users
    interactions = read_interactions(Warehouse(root / "warehouse"), settings)
    seen: dict[str, set[str]] = {}
    for user, item in zip(
        interactions["user_id"].to_pylist(), interactions["item_id"].to_pylist(), strict=True
    ):
        seen.setdefault(user, set()).add(item)
    for user, rows in lists.items():
        assert [r["rank"] for r in rows] == list(range(1, 11))
        scores = [r["score"] for r in rows]
        assert scores == sorted(scores, reverse=True)
        assert len({r["item_id"] for r in rows}) == 10
        assert not {r["item_id"] for r in rows} & seen[user]
        assert {r["strategy"] for r in rows} == {"model"} and {r["model_version"] for r in rows} == {1}
        assert len({r["rec_id"] for r in rows}) == 1
    assert len({rows[0]["rec_id"] for rows in lists.values()}) == WORLD.users


def test_lists_follow_the_planted_taste_clusters(trained):
    _, settings = trained
    # Seen items kept in: users have already met most of their small cluster.
    settings = dataclasses.replace(
        settings, recommend=dataclasses.replace(settings.recommend, exclude_seen=False)
    )
    lists = _lists(recommend(settings, Request(k=10)).rows)
    in_cluster = [
        int(r["item_id"][1:]) % WORLD.clusters == int(user[1:]) % WORLD.clusters
        for user, rows in lists.items()
        for r in rows
    ]
    # Random lists would hit the user's cluster 1 time in 6.
    assert sum(in_cluster) / len(in_cluster) > 0.5


def test_blocklisted_items_never_appear(trained):
    root, settings = trained
    before = recommend(settings, Request(k=10)).rows
    top = pc.value_counts(before["item_id"]).to_pylist()
    blocked = [c["values"] for c in sorted(top, key=lambda c: -c["counts"])[:5]]
    uri = Warehouse(root / "warehouse").uri(catalog.BLOCKLIST)
    delta.append_once(uri, catalog.BLOCKLIST, pa.table({"item_id": blocked, "reason": ["test"] * 5}), "t", 0)
    try:
        after = recommend(settings, Request(k=10)).rows
        assert not set(after["item_id"].to_pylist()) & set(blocked)
        assert after.num_rows == before.num_rows
    finally:
        shutil.rmtree(uri)


def test_k_larger_than_the_catalog_gives_every_unseen_item(trained):
    _, settings = trained
    rows = recommend(settings, Request(k=10_000, users=["u1", "u2"])).rows
    for user, user_rows in _lists(rows).items():
        items = {r["item_id"] for r in user_rows}
        assert len(items) == len(user_rows) == WORLD.items - len(_seen(trained, user))
        assert [r["rank"] for r in user_rows] == list(range(1, len(user_rows) + 1))


def _seen(trained, user: str) -> set[str]:
    root, settings = trained
    interactions = read_interactions(Warehouse(root / "warehouse"), settings)
    mine = interactions.filter(pc.equal(interactions["user_id"], user))
    return set(mine["item_id"].to_pylist())


def test_unknown_users_get_the_popular_list_marked_as_such(trained):
    _, settings = trained
    rows = recommend(settings, Request(k=5, users=["stranger", "u3"])).rows
    lists = _lists(rows)
    assert {r["strategy"] for r in lists["stranger"]} == {"popular"}
    assert {r["model_version"] for r in lists["stranger"]} == {None}
    assert [r["rank"] for r in lists["stranger"]] == [1, 2, 3, 4, 5]
    assert {r["strategy"] for r in lists["u3"]} == {"model"}


def test_holdout_users_get_popular_lists_stably(trained):
    _, settings = trained
    result = recommend(settings, Request(k=5, holdout=0.3))
    lists = _lists(result.rows)
    held = {u for u in lists if in_holdout(u, 0.3)}
    assert 5 < len(held) < 35 and result.popular_users == len(held)
    assert all({r["strategy"] for r in lists[u]} == {"holdout"} for u in held)
    assert all({r["strategy"] for r in lists[u]} == {"model"} for u in set(lists) - held)


def test_a_held_out_user_new_to_the_model_is_no_control(trained):
    """The holdout is the control for users the model knows; a held-out stranger gets the same
    popular list as any user new to the model, marked `popular`, so the comparison is like for like."""
    _, settings = trained
    lists = _lists(recommend(settings, Request(k=5, users=["u3", "stranger"], holdout=1.0)).rows)
    assert {r["strategy"] for r in lists["u3"]} == {"holdout"}
    assert {r["strategy"] for r in lists["stranger"]} == {"popular"}
    assert {r["model_version"] for r in lists["u3"] + lists["stranger"]} == {None}


def _copy(trained, tmp_path):
    """The trained warehouse, copied, for a test that adds data (ingested under a query of its own:
    a checkpoint names absolute landing paths, so it does not travel)."""
    root, _ = trained
    copy = tmp_path / "copy"
    shutil.copytree(root / "warehouse", copy / "warehouse", ignore=shutil.ignore_patterns("_checkpoints"))
    return copy, _settings(copy, **{"ingest.query_name": "after_copy"})


def _u0_clicks_cluster_3(now: datetime) -> list[dict]:
    """u0 (cluster 0) clicks five items of cluster 3, a minute apart, the last a minute before `now`."""
    return [
        event(
            f"probe{n}",
            user_id="u0",
            item_id=f"i{3 + 6 * n}",
            ts=(now - timedelta(minutes=5 - n)).isoformat(),
        )
        for n in range(5)
    ]


def _in_cluster_3(rows: list[dict]) -> int:
    return sum(int(r["item_id"][1:]) % 6 == 3 for r in rows)


def test_clicks_change_sasrec_lists_before_any_retraining(trained, tmp_path):
    root, settings = _copy(trained, tmp_path)
    before = _lists(recommend(settings, Request(k=10, users=["u0", "newcomer"])).rows)
    assert {r["strategy"] for r in before["newcomer"]} == {"popular"}

    # u0 (cluster 0) clicks five items of cluster 3, and a user never seen before clicks three.
    now = datetime.now(UTC)
    clicks = _u0_clicks_cluster_3(now) + [
        event(f"newcomer{n}", user_id="newcomer", item_id=f"i{4 + 6 * n}", ts=now.isoformat())
        for n in range(3)
    ]
    write_landing_file(root / "landing", "events", "clicks.jsonl", clicks)
    run_ingest(settings, once=True)
    after = _lists(recommend(settings, Request(k=10, users=["u0", "newcomer"])).rows)
    assert ModelRegistry(Warehouse(root / "warehouse")).latest() == 1, "no retraining happened"
    assert [r["item_id"] for r in after["u0"]] != [r["item_id"] for r in before["u0"]]
    assert not {c["item_id"] for c in clicks[:5]} & {r["item_id"] for r in after["u0"]}
    assert {r["strategy"] for r in after["newcomer"]} == {"model"}
    assert {r["model_version"] for r in after["newcomer"]} == {1}


def test_clicks_move_mf_with_a_history_term_before_any_retraining(trained, tmp_path):
    """mf with model.mf.history, saved and loaded through the registry, reads the fresh clicks."""
    root, _ = _copy(trained, tmp_path)
    mf = {"model.kind": "mf", "model.mf.dim": 32, "model.mf.history": 5, "train.mf.epochs": 8,
          "train.mf.val_users": 30, "train.mf.weight_decay": 0.0}  # fmt: skip
    settings = _settings(root, **{"ingest.query_name": "after_copy", **mf})
    assert WarehouseTrainer(settings, progress=False).run(full=True).version == 2
    before = _lists(recommend(settings, Request(k=10, users=["u0"])).rows)["u0"]
    write_landing_file(root / "landing", "events", "clicks.jsonl", _u0_clicks_cluster_3(datetime.now(UTC)))
    run_ingest(settings, once=True)
    after = _lists(recommend(settings, Request(k=10, users=["u0"])).rows)["u0"]
    assert ModelRegistry(Warehouse(root / "warehouse")).latest() == 2, "no retraining happened"
    assert {r["model_version"] for r in after} == {2}
    assert _in_cluster_3(after) > _in_cluster_3(before), (before, after)


def test_a_new_item_from_the_last_batch_can_be_recommended(trained, tmp_path):
    root, settings = _copy(trained, tmp_path)
    settings.train.finetune_epochs = 5
    # In the last batch, cluster-0 users click a brand-new item right after a cluster-0 item.
    now = datetime.now(UTC) - timedelta(minutes=30)
    fresh = []
    for user in range(0, 48, 6):
        fresh.append(event(f"new-a{user}", user_id=f"u{user}", item_id="i0", ts=now.isoformat()))
        fresh.append(
            event(
                f"new-b{user}",
                user_id=f"u{user}",
                item_id="brand-new",
                ts=(now + timedelta(seconds=1)).isoformat(),
            )
        )
    write_landing_file(root / "landing", "events", "new-item.jsonl", fresh)
    run_ingest(settings, once=True)
    assert WarehouseTrainer(settings, progress=False).run().version == 2
    rows = recommend(settings, Request(k=10)).rows
    got = rows.filter(pc.equal(rows["item_id"], "brand-new"))
    assert got.num_rows > 0, "the new item is in the catalog and reaches some lists"
    assert set(got["user_id"].to_pylist()).isdisjoint({f"u{u}" for u in range(0, 48, 6)})


def test_cli_writes_a_run_and_exports_the_same_rows(trained, tmp_path):
    root, _ = trained
    warehouse = root / "warehouse"
    out = tmp_path / "recs.parquet"
    done = run_reco("recommend", "-w", str(warehouse), "-k", "7", "--export", str(out), "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    newest = read_run(Warehouse(warehouse))
    assert summary["run_id"] == newest["run_id"][0].as_py() and summary["rows"] == newest.num_rows
    exported = pq.read_table(out).sort_by([("user_id", "ascending"), ("rank", "ascending")])
    assert exported.equals(newest.select(exported.schema.names))
    jsonl = tmp_path / "recs.jsonl"
    assert run_reco("recommend", "-w", str(warehouse), "-k", "3", "--export", str(jsonl)).returncode == 0
    assert len(jsonl.read_text().splitlines()) == WORLD.users * 3


def test_cli_user_table_and_mistakes(trained):
    root, _ = trained
    warehouse = root / "warehouse"
    runs_before = run_ids(Warehouse(warehouse))
    shown = run_reco("recommend", "-w", str(warehouse), "--user", "u4", "-k", "3")
    assert shown.returncode == 0 and "user u4" in shown.stdout and "model list" in shown.stdout
    assert run_ids(Warehouse(warehouse)) == runs_before, "--user only shows, it writes no run"
    bad = run_reco("recommend", "-w", str(warehouse), "--model-version", "99")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    empty = run_reco("recommend", "-w", str(root / "nothing-here"))
    assert empty.returncode == 2 and "Traceback" not in empty.stderr


def test_cli_user_with_nothing_left_gets_a_line(trained):
    root, settings = trained
    warehouse = Warehouse(root / "warehouse")
    every = sorted(set(read_interactions(warehouse, settings)["item_id"].to_pylist()))
    uri = warehouse.uri(catalog.BLOCKLIST)
    blocked = pa.table({"item_id": every, "reason": ["test"] * len(every)})
    delta.append_once(uri, catalog.BLOCKLIST, blocked, "t", 0)
    try:
        shown = run_reco("recommend", "-w", str(root / "warehouse"), "--user", "u4", "-k", "3")
    finally:
        shutil.rmtree(uri)
    assert shown.returncode == 0, shown.stderr
    assert "user u4: nothing left to recommend (every item is seen or blocked)" in shown.stdout


def test_a_reader_during_runs_sees_only_complete_runs(trained):
    root, _ = trained
    warehouse = Warehouse(root / "warehouse")
    expected_rows = WORLD.users * 5
    seen_counts: list[tuple[str, int]] = []
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            run = read_run(warehouse)
            if run is not None:
                seen_counts.append((run["run_id"][0].as_py(), run.num_rows))

    writer = Process(reco_cmd("recommend", "-w", str(root / "warehouse"), "-k", "5", "--json"))
    thread = threading.Thread(target=reader)
    thread.start()
    for _ in range(2):
        assert writer.wait(timeout=300) == 0
        writer = Process(reco_cmd("recommend", "-w", str(root / "warehouse"), "-k", "5", "--json"))
    assert writer.wait(timeout=300) == 0
    stop.set()
    thread.join()
    mine = {run: rows for run, rows in seen_counts if rows == expected_rows}
    assert len(mine) >= 2
    for run_id, rows in seen_counts:
        assert rows == read_run(warehouse, run_id).num_rows, f"run {run_id} was seen half-written"


def test_cli_holdout_serves_the_popular_list_to_its_share(trained):
    """`reco recommend --holdout` reaches the run (the flag was parsed and then dropped)."""
    root, _ = trained
    done = run_reco("recommend", "-w", str(root / "warehouse"), "-k", "3", "--holdout", "0.3", "--json")
    assert done.returncode == 0, done.stderr
    newest = _lists(read_run(Warehouse(root / "warehouse")))
    held = {u for u in newest if in_holdout(u, 0.3)}
    assert 5 < len(held) < 35 and json.loads(done.stdout)["popular_users"] == len(held)
    assert all({r["strategy"] for r in newest[u]} == {"holdout"} for u in held)


def test_latest_lists_survive_partial_runs_and_an_empty_run_commits_nothing(trained, tmp_path):
    root, settings = trained
    settings = dataclasses.replace(settings, warehouse=str(tmp_path / "warehouse"))
    shutil.copytree(root / "warehouse", settings.warehouse)
    warehouse = Warehouse(settings.warehouse)
    full = recommend(settings, Request(k=5))
    assert publish(settings, full)
    partial = recommend(settings, Request(k=3, users=["u1", "u2"]))
    assert publish(settings, partial)
    assert read_run(warehouse)["user_id"].unique().to_pylist() == ["u1", "u2"], "history keeps the run"
    latest = read_latest(warehouse)
    by_user = _lists(latest)
    assert len(by_user) == WORLD.users, "a partial run hides no other user's list"
    for user, rows in by_user.items():
        run = partial if user in ("u1", "u2") else full
        assert [r["rank"] for r in rows] == list(range(1, (3 if run is partial else 5) + 1))
        assert {r["run_id"] for r in rows} == {run.run_id}
        assert [r["item_id"] for r in rows] == [r["item_id"] for r in _lists(run.rows)[user]]
        assert all(r["rec_id"] == f"{run.run_id}/{user}" and r["model_version"] == 1 for r in rows)
    versions = {
        spec.name: delta.current_version(warehouse.uri(spec))
        for spec in (catalog.RECOMMENDATIONS, catalog.LATEST_RECOMMENDATIONS)
    }
    nobody = run_reco("recommend", "-w", settings.warehouse, "--active-since", "1s")
    assert nobody.returncode == 0 and "nothing written" in nobody.stdout, nobody.stderr
    nobody = run_reco("recommend", "-w", settings.warehouse, "--users", "")
    assert nobody.returncode == 0 and "nothing written" in nobody.stdout, "an empty list is nobody"
    after = {
        spec.name: delta.current_version(warehouse.uri(spec))
        for spec in (catalog.RECOMMENDATIONS, catalog.LATEST_RECOMMENDATIONS)
    }
    assert after == versions, "an empty run commits nothing"


def test_the_users_asked_for_from_flags_and_a_users_file(tmp_path):
    from recocli.commands.recommend import chosen_users

    listed = tmp_path / "users.txt"
    listed.write_text(" u1 \n\n   \nu2\n", encoding="utf-8")
    assert chosen_users("a,b", listed, None) == ["a", "b", "u1", "u2"]
    assert chosen_users("u1, u2 ,", None, None) == ["u1", "u2"], "as a users file: spaces dropped"
    assert chosen_users("", None, None) == [], "an empty --users (an empty $VAR) is nobody, not all"
    assert chosen_users(None, listed, "solo") == ["solo"]
    assert chosen_users(None, None, None) is None
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"u1\n\xc8\xff\n")
    for path, message in [(tmp_path / "none.txt", "users file not found"), (binary, "is not UTF-8 text")]:
        with pytest.raises(RecoError, match=message):
            chosen_users(None, path, None)
    for blank in ("", "  "):
        with pytest.raises(RecoError, match="--user names no user"):
            chosen_users(None, None, blank)
