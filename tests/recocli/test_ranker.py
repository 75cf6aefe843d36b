"""The ranker: chosen on the newest rows before learning them, saved with its version, and the one
function behind `reco recommend` and `reco evaluate` (no Spark: bronze is committed with delta-rs)."""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import torch
from planted import START, events

from lakehouse.catalog import Warehouse
from lakehouse.registry import ModelRegistry
from recocli.commands.models import summary
from recocli.config import Settings, load_settings
from recocli.data.synthetic import World
from recocli.lab.evaluate.report import summary_markdown
from recocli.lab.evaluate.served import commit, run_served
from recocli.models import build_model
from recocli.models.prior import RankerState, best_setting
from recocli.models.store import load_version, publish_version
from recocli.models.vocab import Vocabs
from recocli.recommend.bronze import interactions as read_interactions
from recocli.recommend.history import seen_items
from recocli.recommend.ranker import Ranker, cold_name
from recocli.recommend.run import Request, recommend
from recocli.recommend.topk import masked_topk
from recocli.training.incremental import WarehouseTrainer
from recocli.training.interactions import make_interactions
from recocli.training.rank import choice_users

WORLD = World(users=50, items=80, clusters=5)
PEERS = ("1d", "7d", "30d", "90d", "365d", "all")


def _settings(tmp_path) -> Settings:
    return load_settings(
        env={},
        overrides={
            "warehouse": str(tmp_path / "warehouse"),
            "train.sasrec.epochs": 2,
            "train.sasrec.val_users": 20,
            "train.min_epoch_steps": 5,
            "model.sasrec.dim": 16,
            "model.sasrec.blocks": 1,
            "model.sasrec.max_len": 10,
        },
    )


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    """Bronze with two commits and a ranker trained on each (full, then incremental)."""
    root = tmp_path_factory.mktemp("ranker")
    settings = _settings(root)
    first = events(2000, WORLD, seed=3, start=START, span_days=2)
    later = events(400, WORLD, seed=4, start=START + timedelta(days=2), span_days=0.5)
    commit(Warehouse(settings.warehouse), first, 0)
    trainer = WarehouseTrainer(settings, progress=False)
    assert trainer.run(full=True).version == 1
    commit(Warehouse(settings.warehouse), later, 1)
    assert trainer.run().version == 2
    return settings, first, later


def test_the_ranker_is_saved_with_its_version_and_chosen_on_the_newest_rows(warehouse):
    settings, _, later = warehouse
    registry = ModelRegistry(Warehouse(settings.warehouse))
    meta = registry.metadata(2)["ranker"]
    assert meta["half_life"] in meta["half_lives"] and meta["half_lives"][-1] == "all"
    assert len(meta["ndcg@10"]) == len(meta["half_lives"]) * len(meta["weights"]) * len(meta["age_weights"])
    weight = meta["weight"] if meta["weight"] == "inf" else f"{meta['weight']:g}"
    age = f"/age{meta['age_weight']:g}" if meta["age_weight"] else ""
    chosen = meta["ndcg@10"][f"{meta['half_life']}/{weight}{age}"]["ndcg@10"]
    assert chosen == max(f["ndcg@10"] for f in meta["ndcg@10"].values())
    # Version 2 chose on the rows of the second commit, before learning them.
    lo, hi = pc.min_max(later["ts"].cast(pa.int64())).values()
    assert (meta["chosen_on"]["from_us"], meta["chosen_on"]["to_us"]) == (lo.as_py(), hi.as_py())
    one, two = load_version(registry, 1).ranker, load_version(registry, 2).ranker
    # The all-time counts grew by exactly the new positives' weights (O(batch) update, no recount).
    added = read_interactions(Warehouse(settings.warehouse), settings)
    added = added.filter(pc.greater(added["ts"], pa.scalar(lo.as_py() - 1).cast(added["ts"].type)))
    added = added.filter(pc.equal(added["label"], 1))
    grew = float(two.priors[math.inf].counts.sum() - one.priors[math.inf].counts.sum())
    assert grew == pytest.approx(float(pc.sum(added["weight"]).as_py()), rel=1e-5)


def test_recommend_serves_the_rankers_lists(warehouse):
    """What evaluation scores for a user (the ranker over the same version and data) is what
    `reco recommend` writes, item for item."""
    settings, _, _ = warehouse
    wh = Warehouse(settings.warehouse)
    users = ["u1", "u7", "u30", "stranger"]
    served = recommend(settings, Request(k=10, users=users)).rows
    ranker = Ranker.of(load_version(ModelRegistry(wh)))
    interactions = read_interactions(wh, settings)
    exclude = seen_items(interactions, users, ranker.vocabs.items)
    _, rows, personal = ranker.top_k(users, interactions, 10, exclude)
    # The prequential protocol's path: model scores, blended at the chosen weight, seen items masked.
    raw, has = ranker.model_scores(users, interactions)
    evaluated = masked_topk(ranker.blended(raw, has, ranker.state.weight)[0], 10, exclude)[1]
    assert torch.equal(evaluated, rows)
    for n, user in enumerate(users):
        mine = served.filter(pc.equal(served["user_id"], user)).sort_by("rank")
        assert mine["item_id"].to_pylist() == ranker.vocabs.items.ids(rows[n].tolist())
        assert mine["strategy"].to_pylist() == ["model" if personal[n] else "popular"] * 10
    assert not personal[3] and personal[:3].all()


def test_recommend_serves_strangers_the_popularity_chosen_for_them(warehouse):
    """A version whose choice for unknown users differs from its blend's popularity: `reco
    recommend` serves a stranger the former, as the ranker ranks them."""
    settings, _, _ = warehouse
    registry = ModelRegistry(Warehouse(settings.warehouse))
    loaded = load_version(registry, 2)
    state = loaded.ranker.copy()
    state.half_life_s, state.age_weight = math.inf, 0.0
    state.cold_half_life_s, state.cold_age_weight = 86400.0, 1.0
    n_items = len(loaded.vocabs.items)
    cold_top = state.cold_log_prior(n_items).topk(10).indices.tolist()
    assert cold_top != state.log_prior(n_items).topk(10).indices.tolist()
    meta = {k: v for k, v in registry.metadata(2).items() if k != "ranker"}
    version = publish_version(registry, loaded.model, loaded.vocabs, meta, parent=2, ranker=state)
    try:
        served = recommend(settings, Request(k=10, users=["stranger"], model_version=version)).rows
        assert served["item_id"].to_pylist() == loaded.vocabs.items.ids(cold_top)
        assert set(served["strategy"].to_pylist()) == {"popular"}
        ranker = Ranker.of(load_version(registry, version))
        assert ranker.top_k(["stranger"], None, 10)[1][0].tolist() == cold_top
        assert "; unknown users 1d, age 1 (" in summary(registry.metadata(version), version)["ranker"]
    finally:
        registry.rollback(2)


def test_popularity_alone_wins_over_a_model_that_knows_nothing():
    """A random model against popular items that stay popular: the choice is popularity alone
    (weight inf), and then every user's scores are the decayed popularity."""
    rng = np.random.default_rng(0)
    n = 3000
    users = [f"u{u}" for u in rng.integers(0, 200, n)]
    items = [f"i{i}" for i in np.minimum(rng.geometric(0.08, n), 60)]
    rows = make_interactions(users, items, ts=np.arange(n) * 1_000_000)
    vocabs = Vocabs()
    vocabs.users.add(rows["user_id"])
    vocabs.items.add(rows["item_id"])
    settings = Settings()
    settings.model.mf.dim = 8
    model = build_model("mf", len(vocabs.users), len(vocabs.items), settings.model.mf).eval()
    torch.manual_seed(0)
    for param in model.parameters():
        torch.nn.init.normal_(param, std=3.0)  # confident and wrong
    ranker = Ranker.new(model, vocabs, settings.rank)
    ranker.observe(rows.slice(0, 2500))
    ranker.choose(rows.slice(2500), max_users=500)
    assert math.isinf(ranker.state.weight)
    scores, known = ranker.scores(["u1", "u2", "stranger"])
    assert known.tolist() == [True, True, False]
    assert torch.equal(scores[0], scores[1]) and torch.equal(scores[0], scores[2])
    best = max(f["ndcg@10"] for f in ranker.state.figures.values())
    assert ranker.state.figures["all/0"]["ndcg@10"] < best


DAY = 86400 * 10**6
OLD, NEW = [f"old{i}" for i in range(10)], [f"new{i}" for i in range(10)]


def _old_and_new_items() -> tuple[Ranker, Vocabs]:
    """A ranker (a random mf) that has counted old items a little more popular than new ones at
    every half-life: taken long ago, the day before and on day 30; the new ones only on day 30."""
    items = OLD * 4 + NEW + OLD
    ts = [0] * 30 + [29 * DAY] * 10 + [30 * DAY + n for n in range(20)]
    history = make_interactions([f"u{n}" for n in range(len(items))], items, ts=ts)
    vocabs = Vocabs()
    vocabs.users.add(history["user_id"])
    vocabs.items.add(history["item_id"])
    settings = Settings()
    model = build_model("mf", len(vocabs.users), len(vocabs.items), settings.model.mf).eval()
    ranker = Ranker.new(model, vocabs, settings.rank)
    ranker.observe(history)
    return ranker, vocabs


def _strangers_take_the_new_items() -> pa.Table:
    return make_interactions([f"v{n}" for n in range(20)], NEW * 2, ts=[31 * DAY + n for n in range(20)])


def test_newer_items_come_first_when_the_newest_rows_say_so():
    """When what users take next is the new items, the choice for users the model does not know
    weighs item age, and a stranger's list starts with the new items."""
    ranker, vocabs = _old_and_new_items()
    first = ranker.state.first_us[vocabs.items.rows(["old3", "new3"])].tolist()
    assert first == [0, 30 * DAY + 3]
    before = ranker.scores(["stranger"])[0].topk(10).indices[0].tolist()
    assert set(vocabs.items.ids(before)) == set(OLD)  # age not weighed yet
    ranker.choose(_strangers_take_the_new_items(), max_users=100)
    assert ranker.state.cold_age_weight > 0
    top = ranker.scores(["stranger"])[0].topk(10).indices[0].tolist()
    assert set(vocabs.items.ids(top)) == set(NEW)


def test_users_the_model_does_not_know_get_the_popularity_chosen_on_such_users():
    """Most users of the newest rows, known ones, go on taking the old items; strangers take the new
    ones. The blend, chosen on everyone, weighs no age; the strangers' own choice does, and a
    stranger's list is the new items while the blend's popularity still puts the old ones first."""
    ranker, vocabs = _old_and_new_items()
    known = make_interactions(
        [f"u{n}" for n in range(40)], [OLD[(n + 1) % 10] for n in range(40)], ts=[31 * DAY] * 40
    )
    ranker.choose(pa.concat_tables([known, _strangers_take_the_new_items()]), max_users=100)
    state, n_items = ranker.state, len(vocabs.items)
    assert state.age_weight == 0 and state.cold_age_weight > 0
    assert (state.chosen_on["users"], state.chosen_on["warm_users"]) == (60, 40)
    without_age = state.cold_figures[cold_name(state.cold_half_life_s, 0.0)]["ndcg@10"]
    assert state.chosen_on["cold_ndcg@10"] > without_age
    stranger = ranker.scores(["stranger"])[0].topk(10).indices[0].tolist()
    assert set(vocabs.items.ids(stranger)) == set(NEW)
    assert set(vocabs.items.ids(state.log_prior(n_items).topk(10).indices.tolist())) == set(OLD)
    # Saved and loaded with the version; a version saved before this choice serves strangers the blend's.
    again = RankerState.from_stored(state.tensors(), state.metadata())
    assert (again.cold_half_life_s, again.cold_age_weight) == (state.cold_half_life_s, state.cold_age_weight)
    assert torch.equal(again.cold_log_prior(n_items), state.cold_log_prior(n_items))
    meta = state.metadata()
    del meta["cold"]
    before = RankerState.from_stored(state.tensors(), meta)
    assert torch.equal(before.cold_log_prior(n_items), state.log_prior(n_items))


def test_ties_go_to_the_simpler_blend():
    """Equal quality: the smaller age weight wins, then the smaller weight, then the shorter half-life."""
    tied = {(7.0, 4.0, 0.5): 0.3, (30.0, 4.0, 0.25): 0.3, (1.0, 8.0, 0.25): 0.3, (1.0, 0.0, 1.0): 0.2}
    assert best_setting(tied) == (30.0, 4.0, 0.25)
    assert best_setting({**tied, (1.0, 0.0, 1.0): 0.31}) == (1.0, 0.0, 1.0)


def test_a_choice_scores_fewer_users_where_the_catalog_is_large():
    settings = Settings()
    settings.rank.choose_users, settings.rank.choose_scores = 2000, 1_000_000
    assert choice_users(settings, 100) == 2000
    assert choice_users(settings, 50_000) == 20
    assert choice_users(settings, 10**9) == 1


def test_a_ranker_saved_before_item_age_loads_and_ranks_as_it_did():
    state = RankerState.new([86400.0, math.inf], [0.0, math.inf], [0.0, 0.5])
    state.priors[86400.0].update(np.array([0, 1, 1, 2]), np.array([0, 10**6, 2 * 10**6, 3 * 10**6]))
    state.saw(np.array([0, 1, 2]), np.array([0, 10**6, 3 * 10**6]))
    state.half_life_s, state.age_weight = 86400.0, 0.5
    tensors, meta = state.tensors(), state.metadata()
    del tensors["ranker.first_us"], meta["age_weight"], meta["age_weights"]
    meta["half_life"] = "1d"
    old = RankerState.from_stored(tensors, meta)
    assert (old.age_weights, old.age_weight) == ([0.0], 0.0)
    assert torch.equal(old.log_prior(3), state.priors[86400.0].log_prob(3))
    assert not torch.equal(state.log_prior(3), old.log_prior(3))  # the age term, where it is chosen


def test_the_served_protocol_scores_recommend_lists_window_by_window(tmp_path):
    settings = _settings(tmp_path)
    settings.evaluate.bootstrap, settings.evaluate.window = 0.6, "12h"
    stream = events(2500, WORLD, seed=7, start=START, span_days=2)
    result = run_served(stream, "planted", settings)
    assert result["data"]["windows"] == len(result["windows"]) >= 2
    models = result["models"]
    assert set(models) == {"served", "never updated"} | {f"popularity {h}" for h in PEERS}
    scored = sum(w["users"] for w in result["windows"])
    assert scored > 20 and all(m["users"] == scored for m in models.values())
    for m in models.values():
        assert 0 <= m["ndcg@10"] <= 1 and m["ndcg@10_se"] > 0
    assert result["ratios"]["served/never updated"] is not None
    assert result["ranker"]["half_life"] in result["ranker"]["half_lives"]
    # The report shows each window's choice, age weight included.
    table = summary_markdown(result, []).split("| window |")[1]
    assert "| age weight |" in table
    rows = [line for line in table.splitlines() if line.startswith("| 0 |")]
    assert rows and rows[0].split("|")[7].strip() == f"{result['windows'][0]['ranker']['age_weight']:g}"
