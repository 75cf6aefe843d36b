"""The simulated world: deterministic, persistent across rounds, and it rewards good lists."""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from helpers import run_reco, table

from lakehouse import catalog, delta
from lakehouse.catalog import Warehouse
from lakehouse.errors import RecoError
from lakehouse.recommendations import new_run_id
from recocli.config import SimulateSettings, load_settings
from recocli.lab.simulator import SimWorld, click_through, run_round, served_table
from spark_jobs.ingest import run_ingest

NOW = datetime(2024, 5, 1, 12, tzinfo=UTC)
SMALL = SimulateSettings(users=200, items=300, dims=8, new_items_per_round=5, seed=7)


def random_lists(world: SimWorld, users: list[str], k: int, seed: int = 0) -> dict[str, list[str]]:
    rng = np.random.default_rng(seed)
    return {u: [f"i{j}" for j in rng.choice(len(world.items), size=k, replace=False)] for u in users}


def test_same_seed_same_world_and_events_other_seed_differs():
    a, b = SimWorld.create(SMALL), SimWorld.create(SMALL)
    assert a.behaviour_events(500, NOW) == b.behaviour_events(500, NOW)
    lists = {u: a.perfect_list(u, 5) for u in a.user_ids[:50]}
    assert a.respond(served_table(lists, "r1"), NOW) == b.respond(served_table(lists, "r1"), NOW)
    other = SimWorld.create(dataclasses.replace(SMALL, seed=8))
    assert other.behaviour_events(500, NOW) != a.behaviour_events(500, NOW)


def test_behaviour_events_follow_the_contract_and_the_tastes():
    world = SimWorld.create(SMALL)
    events = world.behaviour_events(2000, NOW)
    assert len({e["event_id"] for e in events}) == 2000
    assert {e["event_type"] for e in events} <= {"view", "click", "like", "purchase"}
    ts = [e["ts"] for e in events]
    assert ts == sorted(ts) and ts[-1] == "2024-05-01T12:00:00.000Z"
    assert ts[0] > (NOW - timedelta(minutes=10)).isoformat()
    # users pick items they like far more often than chance
    picked = np.mean([world.true_affinity(e["user_id"], [e["item_id"]])[0] for e in events])
    chance = np.mean([world.true_affinity(u).mean() for u in world.user_ids])
    assert picked > 2 * chance


def test_perfect_knowledge_lists_get_a_much_higher_click_rate_than_random_ones():
    world = SimWorld.create(SMALL)
    users = world.user_ids
    perfect = world.respond(served_table({u: world.perfect_list(u, 10) for u in users}, "perfect"), NOW)
    rand = world.respond(served_table(random_lists(world, users, 10), "random"), NOW)
    ctr_perfect, ctr_random = click_through(perfect), click_through(rand)
    assert ctr_perfect > 2 * ctr_random and ctr_perfect - ctr_random > 0.2, (ctr_perfect, ctr_random)
    counts = Counter(f["action"] for f in rand)
    assert counts["impression"] == 10 * len(users)
    assert counts["dismiss"] > counts["click"] >= counts["like"] > 0
    one = next(f for f in perfect if f["action"] == "click")
    assert set(one) == {
        "event_id",
        "rec_id",
        "user_id",
        "item_id",
        "action",
        "position",
        "model_version",
        "ts",
    }
    assert one["rec_id"] == f"perfect-{one['user_id']}" and 1 <= one["position"] <= 10


def test_top_positions_are_examined_more():
    world = SimWorld.create(dataclasses.replace(SMALL, position_decay=1.0))
    # the same perfect items shown in the first or in the last 5 of 20 places
    lists = {}
    for u in world.user_ids:
        best = world.perfect_list(u, 5)
        lists[u] = best + world.perfect_list(u, 200)[100:115]
    feedback = world.respond(served_table(lists, "pos"), NOW)
    clicks = Counter(f["position"] for f in feedback if f["action"] == "click")
    assert sum(clicks[p] for p in range(1, 6)) > 3 * sum(clicks[p] for p in range(16, 21))


def test_unknown_users_and_items_are_skipped():
    world = SimWorld.create(SMALL)
    served = served_table({"u1": ["i1", "movie-9", "i999999"], "alice": ["i1"]}, "r")
    feedback = world.respond(served, NOW)
    assert {(f["user_id"], f["item_id"]) for f in feedback} == {("u1", "i1")}


def test_rounds_continue_from_saved_state_like_one_long_run(tmp_path):
    settings = dataclasses.replace(SMALL, state=str(tmp_path / "state"))
    saved = SimWorld.open(settings.state, settings)
    memory = SimWorld.create(settings)
    for round_ in range(3):
        now = NOW + timedelta(hours=round_)
        saved = SimWorld.open(settings.state, settings)
        assert saved.round == round_
        assert saved.behaviour_events(100, now) == memory.behaviour_events(100, now)
        saved.advance()
        saved.save(settings.state)
        memory.advance()
    assert len(memory.items) == SMALL.items + 3 * SMALL.new_items_per_round
    assert np.array_equal(SimWorld.open(settings.state, settings).users, memory.users)
    with pytest.raises(RecoError, match=re.escape("made with simulate.users = 200, not 10")):
        SimWorld.open(settings.state, dataclasses.replace(settings, users=10))


def test_drift_moves_tastes_and_new_items_arrive():
    still = SimWorld.create(dataclasses.replace(SMALL, drift=0.0))
    before = still.users.copy()
    still.advance()
    assert np.allclose(still.users, before)
    moving = SimWorld.create(dataclasses.replace(SMALL, drift=0.3))
    before = moving.users.copy()
    moving.advance()
    cosines = np.sum(moving.users * before, axis=1)
    assert 0.3 < cosines.mean() < 0.99
    assert (
        moving.born[-SMALL.new_items_per_round :].tolist() == [1] * SMALL.new_items_per_round
    )  # arrived for round 1
    assert len(moving.items) == SMALL.items + SMALL.new_items_per_round


def test_a_round_answers_the_latest_run_once_and_ingest_accepts_everything(spark, tmp_path):
    warehouse = Warehouse(tmp_path / "warehouse")
    landing = tmp_path / "landing"
    sim = dataclasses.replace(SMALL, state=str(tmp_path / "state"))
    world = SimWorld.create(sim)
    uri = warehouse.uri(catalog.RECOMMENDATIONS)
    old_run, new_run = new_run_id(NOW), new_run_id(NOW + timedelta(minutes=1))
    old = served_table(random_lists(world, world.user_ids[:20], 5), old_run, generated_at=NOW)
    delta.append_once(uri, catalog.RECOMMENDATIONS, old, "test", 0)
    lists = {u: world.perfect_list(u, 5) for u in world.user_ids[:30]}
    latest = served_table(lists, new_run, model_version=3, generated_at=NOW + timedelta(minutes=1))
    delta.append_once(uri, catalog.RECOMMENDATIONS, latest, "test", 1)

    first = run_round(sim, landing, 300, warehouse=warehouse, now=NOW)
    assert (first.round, first.events, first.answered_run) == (0, 300, new_run)
    assert first.feedback["impression"] == 150
    second = run_round(sim, landing, 100, warehouse=warehouse, now=NOW + timedelta(minutes=5))
    assert (second.round, second.answered_run, second.feedback) == (1, None, {})
    assert "answered in an earlier round" in second.note

    settings = load_settings(
        env={}, overrides={"warehouse": str(warehouse.root), "ingest.landing": str(landing)}
    )
    totals = run_ingest(settings, once=True).totals()
    assert (totals["events_written"], totals["quarantined"], totals["duplicates"]) == (400, 0, 0)
    assert totals["feedback_written"] == sum(first.feedback.values())
    fb = table(warehouse.root, catalog.FEEDBACK)
    assert set(fb["model_version"].to_pylist()) == {3}
    assert set(fb["rec_id"].to_pylist()) == {f"{new_run}-u{n}" for n in range(30)}


def test_cli_simulate_is_deterministic_and_explains_mistakes(tmp_path):
    outputs = []
    for name in ("a", "b"):
        args = ["simulate", "--landing", str(tmp_path / name), "--state", str(tmp_path / f"{name}-state")]
        args += ["--events", "50", "--seed", "5", "--now", "2024-05-01T00:00:00Z"]
        first = run_reco(*args)
        assert first.returncode == 0, first.stderr
        assert "round 0: 50 events" in first.stdout
        second = run_reco(*args, "--json")
        assert json.loads(second.stdout.strip().splitlines()[-1])["round"] == 1
        outputs.append(sorted(p.read_text() for p in (tmp_path / name / "events").iterdir()))
    assert outputs[0] == outputs[1] and len(outputs[0]) == 2

    other_seed = run_reco(
        "simulate", "--state", str(tmp_path / "a-state"), "--seed", "6", "--landing", str(tmp_path)
    )
    assert other_seed.returncode == 2
    assert "made with simulate.seed = 5, not 6" in other_seed.stderr and "Traceback" not in other_seed.stderr
    bad_time = run_reco(
        "simulate", "--state", str(tmp_path / "c"), "--now", "noon", "--landing", str(tmp_path)
    )
    assert bad_time.returncode == 2 and "--now must be an ISO-8601 time" in bad_time.stderr
