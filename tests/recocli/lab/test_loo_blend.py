"""Leave-last-out through the ranker: each user's popularity holds only the past of their own "now"
and is the ranker's at that time, a planted era-popularity dataset where the blend must win, and a
blend chosen on the validation stage alone (changing every test item leaves the choice as it was)."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
import torch

from lakehouse.settings import Duration
from recocli.config import KindTraining, MFSettings, Settings
from recocli.lab.evaluate import loo
from recocli.lab.evaluate.loo import run_loo
from recocli.lab.evaluate.report import summary_markdown
from recocli.lab.evaluate.source import Source
from recocli.lab.evaluate.timeprior import (
    Positives,
    first_times,
    reference_times,
    time_local_log_age,
    time_local_log_prior,
)
from recocli.models.prior import RankerState, popularity_part
from recocli.models.vocab import Vocabulary
from recocli.training.interactions import make_interactions

DAY_US = 86400 * 1_000_000
ERAS, HOT, COMMON, USERS_PER_ERA = 6, 6, 24, 16


def table(users: list[str], items: list[str], days: list[float]) -> pa.Table:
    ts = pa.array([int(d * DAY_US) for d in days], pa.int64()).cast(pa.timestamp("us"))
    return make_interactions(users, items, ts=ts)


def test_prior_counts_only_positives_at_or_before_the_users_time():
    history = table(["a", "b", "c", "a"], ["x", "y", "z", "y"], [0.0, 1.0, 10.0, 1.0])
    catalog = Vocabulary()
    catalog.add(pa.array(["x", "y", "z"]))
    ref = reference_times(history, ["a", "b", "c", "nobody"])
    assert ref.tolist() == [DAY_US, DAY_US, 10 * DAY_US, -1]
    at = np.array([DAY_US, DAY_US // 2, -1])  # one day, half a day, before any event
    got = time_local_log_prior(Positives.of(history, catalog), at, 3, half_life_s=86400.0)
    # At day 1: x (day 0) decayed one half-life, y twice at day 1 (ts == now counts), z (day 10) not
    # yet; pseudo-count 1 spread over the 3 items.
    counts = np.array([0.5, 2.0, 0.0]) + 1 / 3
    assert got[0].numpy() == pytest.approx(np.log(counts / counts.sum()), abs=1e-6)
    counts = np.array([2**-0.5, 0.0, 0.0]) + 1 / 3
    assert got[1].numpy() == pytest.approx(np.log(counts / counts.sum()), abs=1e-6)
    assert got[2].numpy() == pytest.approx(np.full(3, math.log(1 / 3)), abs=1e-6)


def test_a_users_popularity_is_the_rankers_as_of_their_time():
    """Held at a user's time, the popularity part (decayed counts less the age term) is what a ranker
    that had observed everything up to then would rank with; items not seen by then have age 0."""
    history = table(["a", "b", "a", "c", "b"], ["x", "y", "y", "z", "x"], [0.0, 2.0, 3.0, 9.0, 12.0])
    catalog = Vocabulary()
    catalog.add(pa.array(["x", "y", "z"]))
    day3 = np.array([3 * DAY_US])
    log_age = time_local_log_age(first_times(history, catalog), day3, 3)
    assert log_age[0].numpy() == pytest.approx(np.log1p([3.0, 1.0, 0.0]), abs=1e-6)  # z comes on day 9
    ranker = RankerState.new([7 * 86400.0], [0.0], [0.0, 0.5])
    upto = history.slice(0, 3)  # what a ranker had observed on day 3
    items = catalog.rows(upto["item_id"])
    ts = upto["ts"].cast(pa.int64()).to_numpy()
    ranker.saw(items, ts)
    ranker.priors[7 * 86400.0].update(items, ts)
    log_p = time_local_log_prior(Positives.of(history, catalog), day3, 3, 7 * 86400.0)
    assert popularity_part(log_p, log_age, 0.5)[0].numpy() == pytest.approx(
        ranker.log_prior(3, 7 * 86400.0, 0.5).numpy(), abs=1e-6
    )


def test_a_small_prior_cache_scores_every_blend_the_same(monkeypatch):
    """Past the cache's size the oldest parts are dropped and made again: the figures do not move."""
    stream = era_stream()
    catalog = Vocabulary()
    catalog.add(stream["item_id"])
    stage = loo._stage(stream.slice(stream.num_rows - 48), stream, catalog)  # 3 batches of 16
    scorer = loo._constant(torch.linspace(0, 1, len(catalog)))
    grid = [(h, w, b) for h in (7 * 86400.0, 365 * 86400.0) for w in (0.5, math.inf) for b in (0.0, 1.0)]
    roomy = loo.score_blends(scorer, stage, (10,), len(catalog), grid)
    monkeypatch.setattr(loo, "PRIOR_CACHE_FLOATS", len(catalog) * 16)  # one part at a time
    monkeypatch.setattr(loo, "BATCH_USERS", 16)
    stage.priors.clear()
    tight = loo.score_blends(scorer, stage, (10,), len(catalog), grid)
    assert tight == roomy
    assert len({q["ndcg@10"] for q in roomy.values()}) > 2
    assert list(stage.priors) == [("age", 32)]  # the newest part stays, of the last batch


def era_stream(seed: int = 0, test_items_from: str = "era") -> pa.Table:
    """Users live in eras 60 days apart and take, within one afternoon, common items (any era), then
    the era's hot items — the same few, skewed, for everybody of that era: their last positives
    (train, validation, test) are hot items of their era. What matters is *when* a user is; a plain
    model and all-time popularity rank the common items first (each era's hot items are rarer).
    `test_items_from="common"` swaps every test item for a common one (train and validation rows
    unchanged)."""
    rng = np.random.default_rng(seed)
    users, items, days = [], [], []
    hot_p = 1.0 / np.arange(1, HOT + 1)
    hot_p /= hot_p.sum()
    for era in range(ERAS):
        for n in range(USERS_PER_ERA):
            user = f"u{era}-{n}"
            start = era * 60 + n * 0.2
            common = rng.choice(COMMON, 4, replace=False)
            hot = rng.choice(HOT, 4, replace=False, p=hot_p)
            picks = [f"c{c}" for c in common] + [f"h{era}-{h}" for h in hot]
            other = int(rng.choice(np.setdiff1d(np.arange(COMMON), common)))
            if test_items_from == "common":
                picks[-1] = f"c{other}"
            for j, item in enumerate(picks):
                users.append(user)
                items.append(item)
                days.append(start + j / 48)
    order = np.argsort(days, kind="stable")
    return table([users[n] for n in order], [items[n] for n in order], [days[n] for n in order])


def fast_settings() -> Settings:
    s = Settings()
    s.train.threads = 1
    s.train.mf = KindTraining(lr=0.003, weight_decay=0.0, epochs=3, val_users=2000)
    s.train.min_epoch_steps = 6
    s.model.mf = MFSettings(dim=16, loss="softmax", history=0)
    s.rank.half_lives = (Duration("7d"), Duration("365d"))
    s.rank.weights = (0.0, 0.5, 2.0)
    s.rank.age_weights = (0.0,)
    return s


def run(test_items_from: str = "era") -> dict:
    source = Source("eras", era_stream(test_items_from=test_items_from), None)
    return run_loo(source, fast_settings(), ["mf", "pop"], (10,), seed=0).as_dict()


@pytest.fixture(scope="module")
def eras() -> dict:
    return run()


def test_blend_with_the_users_time_beats_the_plain_model(eras):
    models = eras["models"]
    assert list(models) == ["mf", "mf-noblend", "pop", "prior"]
    blend = eras["blend"]["mf"]
    assert blend["weight"] > 0 and blend["half_life_days"] == 7
    assert len(blend["validation_ndcg@10"]) == 6  # 2 half-lives × 3 weights
    assert models["mf"]["ndcg@10"] > models["mf-noblend"]["ndcg@10"] + 0.1
    # The time-local prior alone beats all-time popularity (every era's hot items tie there).
    assert models["prior"]["ndcg@10"] > models["pop"]["ndcg@10"] + 0.1
    assert eras["blend"]["prior"]["half_life_days"] == 7
    text = summary_markdown(eras, [])
    assert (
        "| mf-noblend |" in text
        and "mf: ranked by the ranker with its popularity at each user's time" in text
    )


def test_the_blend_is_chosen_on_validation_only(eras):
    swapped = run(test_items_from="common")
    assert swapped["data"]["train_interactions"] == eras["data"]["train_interactions"]
    # Every test item changed (the prior is now no help on test), the choice did not.
    assert swapped["blend"]["mf"]["validation_ndcg@10"] == eras["blend"]["mf"]["validation_ndcg@10"]
    assert swapped["blend"]["mf"]["weight"] == eras["blend"]["mf"]["weight"]
    assert swapped["validation_ndcg@10"] == eras["validation_ndcg@10"]
    assert swapped["models"]["mf"]["ndcg@10"] != eras["models"]["mf"]["ndcg@10"]
    assert swapped["models"]["prior"]["ndcg@10"] < eras["models"]["prior"]["ndcg@10"]
