"""Training a ranker (recocli.recommend.ranker): a model, the decayed counts, and the choice of
half-life and blend weight, made on the newest rows before anything learns them.

`reco train`, `reco ingest --train` and every evaluation protocol train through these two
functions, so what is evaluated is what is served.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from recocli.config import Settings
from recocli.recommend.ranker import Ranker
from recocli.training.fit import fine_tune, fit_full
from recocli.training.interactions import Interactions, as_table


def fit_ranker(
    kind: str,
    interactions: Interactions,
    settings: Settings,
    seed: int | None = None,
    progress: bool | None = None,
    report: dict[str, Any] | None = None,
    log_dir: Path | None = None,
) -> tuple[Ranker, dict[str, Any]]:
    """A new ranker on time-ordered `interactions`: the model fits all but the newest
    rank.choose_share of them, then that share is learned as an incremental batch would be
    (`learn_batch`: chosen on first; only that share is ever a table of strings). Returns the
    ranker and the full fit's metrics; `log_dir` gets the full fit's training curve."""
    n_new = int(interactions.num_rows * settings.rank.choose_share)
    older = interactions.slice(0, interactions.num_rows - n_new)
    model, vocabs, metrics = fit_full(kind, older, settings, seed=seed, progress=progress, log_dir=log_dir)
    ranker = Ranker.new(model, vocabs, settings.rank)
    ranker.observe(older)
    if n_new:
        newest = as_table(interactions.slice(older.num_rows))
        learn_batch(ranker, newest, settings, seed=seed, report=report)
    return ranker, metrics


def choice_users(settings: Settings, n_items: int) -> int:
    """How many users a choice scores: rank.choose_users, fewer where the catalog would take each
    blend past rank.choose_scores scores."""
    cfg = settings.rank
    return max(1, min(cfg.choose_users, cfg.choose_scores // max(n_items, 1)))


def learn_batch(
    ranker: Ranker,
    rows: pa.Table,
    settings: Settings,
    seed: int | None = None,
    report: dict[str, Any] | None = None,
    log_dir: Path | None = None,
) -> None:
    """Predict, then update: choose the half-life, weight and age weight on `rows`, then fine-tune
    the model on them (its curve into `log_dir`) and add them to the decayed counts and first event
    times (in place)."""
    ranker.choose(rows, choice_users(settings, len(ranker.vocabs.items)))
    fine_tune(ranker.model, ranker.vocabs, rows, None, settings, seed=seed, report=report, log_dir=log_dir)
    ranker.observe(rows)
