"""Prequential evaluation: test-then-train, never scoring a window with a model that saw it, and a
planted-drift stream on which shuffling time leaves nothing to learn (so a leak would show)."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pyarrow as pa
import pytest

from recocli.config import HalfLife, KindTraining, SASRecSettings, Settings, Weight
from recocli.lab.evaluate import metrics
from recocli.lab.evaluate.peers import catalog_ids, to_catalog
from recocli.lab.evaluate.prequential import evaluate_window, run_prequential, window_targets
from recocli.lab.evaluate.source import Source
from recocli.models.vocab import Vocabulary
from recocli.recommend.ranker import Ranker
from recocli.training.fit import fine_tune, fit_full
from recocli.training.interactions import make_interactions

DAY = 86400 * 1_000_000
CLUSTERS, PER_CLUSTER, USERS, EVENTS, DAYS = 4, 40, 48, 48, 16


def drift_stream(shuffle_time: bool = False, seed: int = 0) -> pa.Table:
    """Users move through the item clusters in long runs: user u's events draw clusters iid
    uniformly, then take them in runs (u's own cluster first, then the next, …), an item of the
    run's cluster each time, spread evenly over the days.

    In time order the recent past says which cluster comes next. Shuffling the timestamps leaves
    nothing to learn: every user's clusters are iid uniform, items are drawn with replacement (so
    an unseen item is as likely as any other), and every cluster is equally popular at any moment.
    """
    rng = np.random.default_rng(seed)
    users, items, ts = [], [], []
    for u in range(USERS):
        counts = rng.multinomial(EVENTS, [1 / CLUSTERS] * CLUSTERS)
        clusters = np.concatenate(
            [np.full(counts[c % CLUSTERS], c % CLUSTERS) for c in range(u, u + CLUSTERS)]
        )
        for j, cluster in enumerate(clusters):
            users.append(f"u{u}")
            items.append(f"i{cluster * PER_CLUSTER + int(rng.integers(PER_CLUSTER))}")
            ts.append(int((j + rng.random()) * DAYS * DAY / EVENTS))
    ts = np.array(ts)
    if shuffle_time:
        ts = rng.permutation(ts)
    order = np.argsort(ts, kind="stable")
    return make_interactions(
        [users[n] for n in order], [items[n] for n in order], ts=pa.array(ts[order]).cast(pa.timestamp("us"))
    )


def fast_settings() -> Settings:
    s = Settings()
    s.train.threads = 1
    s.train.sasrec = KindTraining(lr=0.003, weight_decay=0.0, epochs=4, val_users=2000)
    s.train.min_epoch_steps = 6
    s.train.patience = 2
    s.train.finetune_lr = 0.003
    s.model.sasrec = SASRecSettings(dim=16, blocks=1, max_len=20)
    s.evaluate.window = "1d"
    s.evaluate.bootstrap = 0.5
    s.evaluate.retrain_every = 5
    s.rank.half_lives = (HalfLife("1d"), HalfLife("all"))
    s.rank.weights = (Weight(0), Weight(1), Weight("inf"))
    return s


def run(shuffle_time: bool) -> dict:
    source = Source("drift", drift_stream(shuffle_time), None)
    return run_prequential(source, fast_settings(), ["sasrec", "pop"], (10,), seed=0).as_dict()


@pytest.fixture(scope="module")
def ordered() -> dict:
    return run(shuffle_time=False)


@pytest.fixture(scope="module")
def shuffled() -> dict:
    return run(shuffle_time=True)


def test_every_window_is_scored_before_any_strategy_learns_from_it(ordered):
    windows = ordered["strategies"]["windows"]
    assert DAYS // 2 <= len(windows) <= DAYS // 2 + 1
    for window in windows:
        start = datetime.fromisoformat(window["start"].replace("Z", "+00:00"))
        assert window["users"] > 0
        for name, values in window["strategies"].items():
            if values["trained_through"] is not None:
                seen = datetime.fromisoformat(values["trained_through"].replace("Z", "+00:00"))
                assert seen < start, (name, window["window"])
    # The incremental model did learn: by the last window it holds events of the window before it.
    last, before = windows[-1], windows[-2]
    through = last["strategies"]["incremental"]["trained_through"]
    assert through >= before["start"]
    assert ordered["models"]["stale"]["seconds"] == 0.0
    assert set(ordered["models"]) >= {"stale", "incremental", "retrain", "popular", "chance", "prior"}


def test_ordered_time_beats_chance_shuffled_time_does_not(ordered, shuffled):
    chance = ordered["models"]["chance"]["ndcg@10"]
    assert ordered["models"]["incremental"]["ndcg@10"] > 2 * chance  # 2.7x on a CPU, 2.4x on a GPU
    # Popularity is flat at every moment: no better than chance.
    assert ordered["models"]["popular"]["ndcg@10"] < 1.3 * chance
    shuffled_chance = shuffled["models"]["chance"]["ndcg@10"]
    assert shuffled["models"]["incremental"]["ndcg@10"] < 1.3 * shuffled_chance
    assert shuffled["models"]["retrain"]["ndcg@10"] < 1.3 * shuffled_chance


def test_decayed_popularity_peers_and_the_ratio_to_the_best_of_them(ordered):
    """The peers of `--protocol served` ride along: flat popularity at every half-life, and each
    strategy's NDCG@10 over the best of them."""
    models, chance = ordered["models"], ordered["models"]["chance"]["ndcg@10"]
    peers = [f"popularity {h}" for h in ("1d", "7d", "30d", "90d", "365d", "all")]
    assert all(models[p]["users"] == models["incremental"]["users"] for p in peers)
    best = max(models[p]["ndcg@10"] for p in peers)
    assert best < 1.3 * chance
    for name in ("stale", "incremental", "retrain"):
        assert ordered["ratios"][f"{name}/best popularity"] == round(models[name]["ndcg@10"] / best, 3)
    assert ordered["ratios"]["incremental/best popularity"] > 2.0


def test_a_model_that_saw_the_window_would_stand_out(shuffled):
    """The same shuffled stream, scored the wrong way round (learn the window, then score it): far
    above chance — the leak the prequential numbers above do not show."""
    data = drift_stream(shuffle_time=True)
    ts = data["ts"].cast(pa.int64()).to_numpy()
    lo = int(np.searchsorted(ts, ts[0] + 10 * DAY))
    hi = int(np.searchsorted(ts, ts[0] + 11 * DAY))
    history, window = data.slice(0, lo), data.slice(lo, hi - lo)
    settings = fast_settings()
    model, vocabs, _ = fit_full("sasrec", history, settings, seed=0, progress=False)
    fine_tune(model, vocabs, window, None, settings, seed=0)  # the leak
    ranker = Ranker.new(model, vocabs, settings.rank)
    ranker.observe(history)
    catalog = Vocabulary()
    catalog.add(history["item_id"])
    targets = window_targets(window, history, catalog, set(history["user_id"].to_pylist()))
    raw, has = ranker.model_scores(targets.users, history)
    scores = to_catalog(ranker.blended(raw, has, 0.0)[0], vocabs.items.rows(catalog_ids(catalog)))
    leaky = metrics.mean(evaluate_window(scores, targets, (10,))["ndcg@10"])
    assert leaky > 2 * shuffled["models"]["chance"]["ndcg@10"]


def test_same_seed_same_numbers(ordered):
    again = run(shuffle_time=False)

    def numbers(result: dict) -> dict:
        return {name: {k: v for k, v in m.items() if k != "seconds"} for name, m in result["models"].items()}

    assert numbers(again) == numbers(ordered)
    assert again["strategies"]["blend"] == ordered["strategies"]["blend"]
