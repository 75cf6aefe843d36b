"""Spark MLlib ALS as a `reco evaluate` peer: a small grid on the validation item, factors scored
by the same masked full-catalog ranking as our models, RMSE/MAE from an explicit fit."""

from __future__ import annotations

import numpy as np
from evaluate_fixtures import write_planted_movielens

from recocli.config import Settings
from recocli.lab.evaluate.loo import run_loo
from recocli.lab.evaluate.source import load
from spark_jobs.als import Ratings, fit_als


def test_als_peer_in_leave_last_out(spark, tmp_path):
    settings = Settings()
    settings.evaluate.als_ranks = (8,)
    settings.evaluate.als_regs = (0.1,)
    settings.evaluate.als_alphas = (1.0, 20.0)
    settings.evaluate.als_iters = 5
    source = load(settings, write_planted_movielens(tmp_path / "ml-planted"))
    result = run_loo(source, settings, ["als", "pop"], (10,), seed=0).as_dict()
    grid = result["als_grid"]
    assert [(g["rank"], g["alpha"]) for g in grid] == [(8, 1.0), (8, 20.0)]
    best = max(grid, key=lambda g: g["quality"])
    assert result["als_params"]["alpha"] == best["alpha"]
    assert result["validation_ndcg@10"]["als"] == best["quality"]
    als, pop = result["models"]["als"], result["models"]["pop"]
    assert als["hr@10"] > pop["hr@10"]  # planted clusters: ALS finds them
    ratings = result["ratings"]
    assert ratings["predicted"] > 0.8 * ratings["heldout_ratings"] > 0
    assert 0 < ratings["mae"] <= ratings["rmse"] < 2.0


def test_factors_predict_and_unknown_rows(spark):
    users = np.array([0, 0, 1, 1, 2])
    items = np.array([0, 1, 0, 2, 1])
    factors = fit_als(spark, Ratings(users, items, np.ones(5), n_users=4, n_items=4), rank=2, iters=3)
    assert factors.users.shape == (4, 2) and factors.items.shape == (4, 2)
    assert factors.user_known.tolist() == [True, True, True, False]
    assert factors.item_known.tolist() == [True, True, True, False]
    predicted = factors.predict(np.array([0, 3]), np.array([1, 1]))
    assert np.isfinite(predicted[0]) and np.isnan(predicted[1])
