"""Leave-last-out evaluation with full ranking: every peer on the same split, catalog and metrics.

Per user the last positive is the test item and the one before it the validation item; the rest
trains (recocli.lab.evaluate.split.loo_split). Each model ranks the whole catalog — every item seen in
training — with the user's own items left out (no sampled negatives), and the same metric code
scores every list. The validation item chooses ALS's grid point and is read, not learned, as the
newest history item when the test item is scored (sasrec reads it, and so does mf with a history
term, model.mf.history; ALS cannot).

Our models (sasrec, mf) rank as `reco recommend` ranks them: through the ranker's function
(recocli.models.prior.rank_scores), blended with its popularity part held at the user's own "now"
(recocli.lab.evaluate.timeprior: decayed counts and item age as of the user's last event), the
half-life, weight and age weight chosen from the `[rank]` grid with the ranker's rule
(`best_setting`) on the validation stage only (`result.blend`); the plain model's test row stays as
`<model>-noblend` and the popularity alone as `prior`, so the report shows what the blend adds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import Tensor

from lakehouse.errors import RecoError
from recocli.config import Settings
from recocli.lab.evaluate import blend_info, check_models, metrics
from recocli.lab.evaluate.peers import catalog_ids, popularity, to_catalog
from recocli.lab.evaluate.source import Source, rating_values
from recocli.lab.evaluate.split import LooSplit, loo_split
from recocli.lab.evaluate.timeprior import (
    Positives,
    first_times,
    reference_times,
    time_local_log_age,
    time_local_log_prior,
)
from recocli.models import KINDS
from recocli.models.prior import best_setting, pair_name, popularity_part, rank_scores
from recocli.models.vocab import Vocabulary
from recocli.recommend.history import score_users, seen_items
from recocli.recommend.ranker import rank_grid
from recocli.training.fit import fit_full

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from spark_jobs.als import Factors

BATCH_USERS = 1024
PRIOR_CACHE_FLOATS = 100_000_000  # per stage: 400 MB of cached priors at most
Scorer = Callable[[list[str], pa.Table], Tensor]  # (users, history) → scores [B, catalog]
Log = Callable[[str], None]


@dataclass
class Stage:
    """Who is scored against which item, with what history and what left out."""

    users: list[str]
    relevant: Tensor  # [B, 1] catalog rows (PAD: not in the catalog, a miss)
    history: pa.Table  # what the models may read
    exclude: Tensor  # [B, S] catalog rows the user already had
    ref_us: np.ndarray  # [B] each user's "now": their newest event in `history` (µs)
    positives: Positives  # the positives of `history`, for the time-local prior
    first_us: Tensor  # [catalog] each item's first event in `history` (µs; -1: none), for its age
    priors: dict = field(default_factory=dict)  # (half-life or "age", batch start) → [b, catalog]


@dataclass
class Stages:
    """The validation and test stages of one split, scored at `ks` over `n_items` catalog rows."""

    val: Stage
    test: Stage
    ks: tuple[int, ...]
    n_items: int


@dataclass
class LooResult:
    protocol: str
    dataset: str
    seed: int
    ks: tuple[int, ...]
    data: dict
    models: dict[str, dict[str, float | None]] = field(default_factory=dict)
    validation: dict[str, float | None] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    blend: dict[str, dict] = field(default_factory=dict)
    details: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "protocol": self.protocol,
            "dataset": self.dataset,
            "seed": self.seed,
            "ks": list(self.ks),
            "data": self.data,
            "models": self.models,
            "validation_ndcg@10": self.validation,
            "seconds": self.seconds,
            "blend": self.blend,
            **self.details,
        }


def _stage(rows: pa.Table, history: pa.Table, catalog: Vocabulary) -> Stage:
    users = rows["user_id"].to_pylist()
    relevant = torch.from_numpy(catalog.rows(rows["item_id"])[:, None])
    return Stage(
        users, relevant, history, seen_items(history, users, catalog),
        reference_times(history, users), Positives.of(history, catalog), first_times(history, catalog),
    )  # fmt: skip


def stage_prior(stage: Stage, a: int, b: int, n_items: int, half_life_s: float, age_weight: float) -> Tensor:
    """The ranker's popularity part [b - a, n_items] at the time of each of the stage's users
    a..b-1; its parts are kept for reuse by the next blend while the stage's cache stays small."""
    log_p = _cached(stage, (float(half_life_s), a), lambda: time_local_log_prior(
        stage.positives, stage.ref_us[a:b], n_items, half_life_s
    ))  # fmt: skip
    if not age_weight:
        return log_p
    log_age = _cached(
        stage, ("age", a), lambda: time_local_log_age(stage.first_us, stage.ref_us[a:b], n_items)
    )
    return popularity_part(log_p, log_age, age_weight)


def _cached(stage: Stage, key: tuple, make: Callable[[], Tensor]) -> Tensor:
    """`make()` once per key; past the cache's size the oldest entries go first (blends run batch
    by batch, so a batch's entries serve all its blends)."""
    if key not in stage.priors:
        out = make()
        while (
            stage.priors and sum(t.numel() for t in stage.priors.values()) + out.numel() > PRIOR_CACHE_FLOATS
        ):
            del stage.priors[next(iter(stage.priors))]
        stage.priors[key] = out
    return stage.priors[key]


def score_stage(scorer: Scorer, stage: Stage, ks: tuple[int, ...], n_items: int) -> dict[str, float | None]:
    """Mean metrics over the stage's users, and catalog coverage of their top-K lists."""
    return score_blends(scorer, stage, ks, n_items, [AS_IS])[AS_IS]


Blend = tuple[float, float, float]  # the ranker's (half-life in seconds, weight, age weight)
AS_IS: Blend = (math.inf, 0.0, 0.0)  # weight 0: the scores as they are


def score_blends(
    scorer: Scorer, stage: Stage, ks: tuple[int, ...], n_items: int, blends: list[Blend]
) -> dict[Blend, dict[str, float | None]]:
    """score_stage for each blend of the scorer's scores with the popularity at each user's time,
    ranked as the ranker ranks (`rank_scores`) — the model scores each batch once. Weight 0 is the
    model as is (under any half-life: evaluated once); weight inf the popularity alone. Every
    stage user has history (the split needs three positives), so none gets the cold fallback."""
    parts: dict[Blend, list] = {p: [] for p in blends}
    tops: dict[Blend, list] = {p: [] for p in blends}
    for a in range(0, len(stage.users), BATCH_USERS):
        b = min(a + BATCH_USERS, len(stage.users))
        raw = (
            scorer(stage.users[a:b], stage.history) if any(not math.isinf(w) for _, w, _ in blends) else None
        )
        has = torch.ones(b - a, dtype=torch.bool)
        plain = None
        for setting in blends:
            half_life, weight, age_weight = setting
            if weight == 0 and plain is not None:
                per_user, top = plain
            else:
                if weight == 0:
                    scores = raw
                else:
                    log_prior = stage_prior(stage, a, b, n_items, half_life, age_weight)
                    scores = rank_scores(log_prior if raw is None else raw, log_prior, weight, has)
                per_user, top = metrics.evaluate_scores(scores, stage.relevant[a:b], stage.exclude[a:b], ks)
                if weight == 0:
                    plain = per_user, top
            parts[setting].append(per_user)
            tops[setting].append(top)
    return {p: _summary(parts[p], tops[p], ks, n_items) for p in blends}


def _summary(parts: list, tops: list, ks: tuple[int, ...], n_items: int) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    if not parts:
        return out
    for name in parts[0]:
        out[name] = metrics.mean(np.concatenate([p[name] for p in parts]))
    top = np.concatenate(tops)
    for k in ks:
        out[f"coverage@{k}"] = metrics.coverage(top[:, :k], n_items)
    return out


def _constant(vector: Tensor) -> Scorer:
    return lambda users, history: vector[None, :].expand(len(users), -1)


def run_loo(
    source: Source,
    settings: Settings,
    models: list[str],
    ks: tuple[int, ...],
    seed: int,
    log: Log = lambda message: None,
    model_settings: dict[str, Settings] | None = None,
) -> LooResult:
    """Train and score each of `models` (sasrec, mf, als, pop) on one leave-last-out split.

    `model_settings`: settings for some models (their own training config), else `settings`."""
    check_models("loo", models)
    started = time.perf_counter()
    split = loo_split(source.interactions)
    if split.test.num_rows == 0:
        raise RecoError("no user has 3 positive interactions: nothing to leave out for a test")
    catalog = Vocabulary()
    catalog.add(split.train["item_id"])
    val_stage = _stage(split.val, split.train, catalog)
    test_stage = _stage(split.test, pa.concat_tables([split.train, split.val]), catalog)
    result = LooResult(
        "loo",
        source.name,
        seed,
        ks,
        {
            "interactions": source.interactions.num_rows,
            "train_interactions": split.train.num_rows,
            "users": len(set(source.interactions["user_id"].to_pylist())),
            "tested_users": split.test.num_rows,
            "catalog": len(catalog),
            "test_items_outside_catalog": int((test_stage.relevant < 0).sum()),
        },
    )
    n_items = len(catalog)
    stages = Stages(val_stage, test_stage, ks, n_items)
    blended = [m for m in models if m in KINDS]
    if blended and "prior" not in models:
        models = [*models, "prior"]  # the prior alone rides along: what the blend adds to it
    for name in models:
        own = (model_settings or {}).get(name, settings)
        if name == "prior":
            _prior_row(stages, own, result, log)
            continue
        log(f"{name}: training on {split.train.num_rows} interactions")
        clock = time.perf_counter()
        if name == "pop":
            scorer = _constant(popularity(split.train, catalog))
        elif name in KINDS:
            model, vocabs, fit_metrics = fit_full(name, split.train, own, seed=seed, progress=False)
            index = vocabs.items.rows(catalog_ids(catalog))

            def scorer(users, history, model=model, vocabs=vocabs, index=index):
                return to_catalog(score_users(model, vocabs, history, users)[0], index)

            result.details.setdefault("training", {})[name] = fit_metrics
        else:  # als (check_models allowed nothing else)
            scorer = _als_scorer(split, source.ratings, catalog, val_stage, settings, seed, result, log)
        result.seconds[name] = round(time.perf_counter() - clock, 3)
        if name in KINDS:
            _blended_rows(name, scorer, stages, own, result, log)
        else:
            result.validation[name] = score_stage(scorer, val_stage, (10,), n_items).get("ndcg@10")
            result.models[name] = score_stage(scorer, test_stage, ks, n_items)
        log(f"{name}: test NDCG@10 {result.models[name].get('ndcg@10')}")
    result.seconds["total"] = round(time.perf_counter() - started, 3)
    return result


def _blended_rows(
    name: str, scorer: Scorer, stages: Stages, settings: Settings, result: LooResult, log: Log
) -> None:
    """`name` ranked by the ranker at the `[rank]` blend best on the validation stage, and
    `name-noblend`, the model as is, on the test stage."""
    clock = time.perf_counter()
    half_lives, weights, age_weights = rank_grid(settings.rank)
    grid = [(h, w, b) for h in half_lives for w in weights for b in age_weights]
    val = score_blends(scorer, stages.val, (10,), stages.n_items, list(dict.fromkeys([*grid, AS_IS])))
    chosen = best_setting({g: val[g].get("ndcg@10") or 0.0 for g in grid})
    log(f"{name}: ranker blend {pair_name(*chosen)} (validation)")
    test = score_blends(scorer, stages.test, stages.ks, stages.n_items, list(dict.fromkeys([chosen, AS_IS])))
    result.validation[name] = val[chosen].get("ndcg@10")
    result.validation[f"{name}-noblend"] = val[AS_IS].get("ndcg@10")
    result.models[name] = test[chosen]
    result.models[f"{name}-noblend"] = test[AS_IS]
    result.blend[name] = {
        **blend_info(*chosen),
        "validation_ndcg@10": {pair_name(*g): val[g].get("ndcg@10") for g in grid},
        "seconds": round(time.perf_counter() - clock, 3),
    }


def _prior_row(stages: Stages, settings: Settings, result: LooResult, log: Log) -> None:
    """The ranker's popularity alone (weight inf), its half-life and age weight chosen on the
    validation stage."""
    clock = time.perf_counter()
    half_lives, _, age_weights = rank_grid(settings.rank)
    grid = [(h, math.inf, b) for h in half_lives for b in age_weights]
    prior_only = _constant(torch.zeros(stages.n_items))
    val = score_blends(prior_only, stages.val, (10,), stages.n_items, grid)
    best = best_setting({g: val[g].get("ndcg@10") or 0.0 for g in grid})
    test = score_blends(prior_only, stages.test, stages.ks, stages.n_items, [best])
    result.validation["prior"] = val[best].get("ndcg@10")
    result.models["prior"] = test[best]
    result.blend["prior"] = {
        **blend_info(*best),
        "weight": None,  # the popularity alone
        "validation_ndcg@10": {pair_name(*g): val[g].get("ndcg@10") for g in grid},
    }
    result.seconds["prior"] = round(time.perf_counter() - clock, 3)
    log(f"prior: {pair_name(*best)}, test NDCG@10 {result.models['prior'].get('ndcg@10')}")


def _als_scorer(
    split: LooSplit,
    ratings: pa.Table | None,
    catalog: Vocabulary,
    val_stage: Stage,
    settings: Settings,
    seed: int,
    result: LooResult,
    log: Log,
) -> Scorer:
    """Implicit ALS in Spark on the training positives (weights as confidences), the grid point
    with the best validation NDCG@10; scores U·Vᵀ. Also an explicit ALS for RMSE/MAE on ratings."""
    from spark_jobs.session import build_session  # a JVM: only when ALS is asked for

    spark = build_session(settings.spark)
    users = Vocabulary()
    users.add(split.train["user_id"])
    best, grid = _als_grid_search(spark, split, users, catalog, val_stage, settings, seed, log)
    result.details["als_grid"] = grid
    result.details["als_params"] = best.params
    errors = _als_rating_errors(spark, split, ratings, users, catalog, best.params["rank"], settings, seed)
    if errors is not None:
        result.details["ratings"] = errors
    return _als_factors_scorer(users, best)


def _als_factors_scorer(users: Vocabulary, factors: Factors) -> Scorer:
    """Scores U·Vᵀ of fitted ALS factors; items ALS never saw score -inf."""

    def score(batch: list[str], history: pa.Table) -> Tensor:
        rows = users.rows(pa.array(batch, pa.string()))
        u = torch.from_numpy(factors.users[np.maximum(rows, 0)])
        out = u @ torch.from_numpy(factors.items).T
        out[:, torch.from_numpy(~factors.item_known)] = float("-inf")
        return out

    return score


def _als_grid_search(
    spark: SparkSession,
    split: LooSplit,
    users: Vocabulary,
    catalog: Vocabulary,
    val_stage: Stage,
    settings: Settings,
    seed: int,
    log: Log,
) -> tuple[Factors, list[dict]]:
    """Implicit ALS at every grid point of evaluate.als_*: the best factors by validation NDCG@10,
    and the grid's figures."""
    from spark_jobs import als

    cfg = settings.evaluate
    pos = split.train.filter(pc.equal(split.train["label"], 1))
    u_rows, i_rows = users.rows(pos["user_id"]), catalog.rows(pos["item_id"])
    weights = pos["weight"].to_numpy().astype(np.float64)

    def quality(factors: Factors) -> float:
        scorer = _als_factors_scorer(users, factors)
        return score_stage(scorer, val_stage, (10,), len(catalog)).get("ndcg@10") or 0.0

    return als.grid_search(
        spark, als.Ratings(u_rows, i_rows, weights, len(users), len(catalog)), quality,
        ranks=list(cfg.als_ranks), regs=list(cfg.als_regs), alphas=list(cfg.als_alphas),
        iters=cfg.als_iters, seed=seed,
        on_fit=lambda params, value: log(f"als {params}: validation NDCG@10 {value:.4f}"),
    )  # fmt: skip


def _als_rating_errors(
    spark: SparkSession,
    split: LooSplit,
    ratings: pa.Table | None,
    users: Vocabulary,
    catalog: Vocabulary,
    rank: int,
    settings: Settings,
    seed: int,
) -> dict[str, Any] | None:
    """RMSE/MAE of an explicit ALS (the chosen rank) on the held-out ratings; None without ratings."""
    from spark_jobs import als

    train_values = rating_values(split.train, ratings)
    held = split.heldout
    held_values = rating_values(held, ratings)
    if not (np.isfinite(train_values).any() and np.isfinite(held_values).any()):
        return None
    rated = np.isfinite(train_values)
    train = als.Ratings(
        users.rows(split.train["user_id"])[rated], catalog.rows(split.train["item_id"])[rated],
        train_values[rated], len(users), len(catalog),
    )  # fmt: skip
    iters = settings.evaluate.als_iters
    explicit = als.fit_als(spark, train, rank=rank, reg=0.1, iters=iters, implicit=False, seed=seed)
    hu, hi = users.rows(held["user_id"]), catalog.rows(held["item_id"])
    ok = np.isfinite(held_values) & (hu >= 0) & (hi >= 0)
    predicted = explicit.predict(np.maximum(hu, 0), np.maximum(hi, 0))
    ok &= np.isfinite(predicted)
    return {
        "model": f"als explicit (rank {rank}, reg 0.1)",
        "heldout_ratings": int(np.isfinite(held_values).sum()),
        "predicted": int(ok.sum()),
        "rmse": metrics.rmse(predicted[ok], held_values[ok]),
        "mae": metrics.mae(predicted[ok], held_values[ok]),
    }
