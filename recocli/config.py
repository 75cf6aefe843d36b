"""One typed configuration: defaults (mirrored in conf/reco.toml), a TOML file, RECO_* env vars, flags.

Only this module (through lakehouse.settings) reads config files and RECO_* variables; everything else
receives a `Settings`. Env names follow the TOML path: `ingest.max_files_per_batch` is
`RECO_INGEST_MAX_FILES_PER_BATCH`, `warehouse` is `RECO_WAREHOUSE`. The ingest and Spark sections are
spark_jobs' own (spark_jobs.settings); `Settings` extends them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lakehouse.settings import apply_layers, read_toml
from spark_jobs.settings import JobSettings


@dataclass
class DataSettings:
    # Where `reco data fetch` unpacks datasets.
    dir: str = "./datasets"
    movielens_url: str = "https://files.grouplens.org/datasets/movielens"
    # Rows per bronze commit when `reco data import` backfills bronze.
    batch_rows: int = 500000
    # Most events per landing file written by `reco data import --to landing` and `reco replay`.
    file_events: int = 50000
    # `reco replay`: at most one file per this interval, unless behind schedule.
    replay_flush: str = "1s"


@dataclass
class SimulateSettings:
    # Folder holding the simulated world between `reco simulate` rounds.
    state: str = "./simworld"
    seed: int = 42
    users: int = 1000
    items: int = 500
    dims: int = 16
    new_items_per_round: int = 10
    # Share of each user's taste replaced by a random direction per round (0: tastes never move).
    drift: float = 0.05
    # Click probability = sigmoid(click_scale * cos(user, item) + click_bias) × examination(rank).
    click_scale: float = 5.0
    click_bias: float = -2.5
    # Examination probability of rank r is 1 / (1 + position_decay * (r - 1)).
    position_decay: float = 0.1
    # Time spanned by one round's behaviour events, ending at the round's time.
    round_span: str = "10m"


@dataclass
class ModelSettings:
    # "sasrec" (causal Transformer over each user's recent items) or "mf" (matrix factorisation).
    kind: str = "sasrec"
    dim: int = 64
    # sasrec: Transformer blocks, attention heads, longest history it reads, dropout.
    blocks: int = 2
    heads: int = 2
    max_len: int = 50
    dropout: float = 0.2
    # sasrec: 0 = full softmax over the catalog; N = sampled softmax with N shared random negatives.
    sampled_negatives: int = 0
    # mf: random negatives per positive (binary cross-entropy with explicit negatives).
    mf_negatives: int = 8
    # mf loss: "bce" (pointwise: positives, explicit and sampled negatives) or "softmax" (full softmax
    # over the catalog on positives, as sasrec; stronger full-ranking results on MovieLens).
    mf_loss: str = "bce"
    # mf: 0 = classic MF; N = the user's vector also adds the mean of their N latest positives'
    # context vectors (SVD++ style), so mf reads a fresh history at serving time as sasrec does.
    mf_history: int = 0


@dataclass
class EventWeights:
    """Loss weight of each event type / feedback action; 0 drops it. dislike and dismiss are
    negatives, ratings below train.rating_threshold too; every other kind is a positive."""

    view: float = 0.5
    click: float = 1.0
    add_to_cart: float = 2.0
    purchase: float = 3.0
    rating: float = 1.0
    like: float = 2.0
    impression: float = 0.0
    dislike: float = 1.0
    dismiss: float = 0.5


@dataclass
class TrainSettings:
    # Full training: most epochs, early-stopping patience (epochs without a better validation HR@10).
    epochs: int = 30
    patience: int = 3
    # An epoch on small data repeats it until it holds this many batches (so patience means something).
    min_epoch_steps: int = 20
    # Users whose last interaction (a first-time item) is held out for validation; 0 = none.
    val_users: int = 2000
    lr: float = 0.001
    # Incremental fine-tune: small learning rate, few passes over new rows + replay.
    finetune_lr: float = 0.001
    finetune_epochs: int = 3
    # Small batches: more steps from the few rows of a micro-batch; a bigger micro-batch gets bigger
    # batches so that one pass stays at most finetune_steps steps.
    finetune_batch_size: int = 64
    finetune_steps: int = 32
    # Rows new in a fine-tune's batch start at their company's mean and move this many times faster.
    new_row_lr_scale: float = 10.0
    batch_size: int = 256
    weight_decay: float = 0.0
    # Ratings at or above this are positives, below it negatives.
    rating_threshold: float = 3.5
    # A new user or item gets a row once seen this many times.
    min_count: int = 1
    # Replay: this many history rows per new row, at most replay_size.
    replay_ratio: float = 1.0
    replay_size: int = 20000
    seed: int = 0
    # Lightning pass-through: accelerator, devices ("auto", a count or a list), strategy (ddp …),
    # precision ("auto": bf16-mixed on GPU, 32-true on CPU).
    accelerator: str = "auto"
    devices: str = "auto"
    strategy: str = "auto"
    precision: str = "auto"
    # CPU threads for PyTorch (0: one per core). 1 by default: on a small box shared with Spark or a
    # second job, threads fighting for cores made training several times slower (README, `reco train`).
    threads: int = 1
    weights: EventWeights = field(default_factory=EventWeights)


@dataclass
class RecommendSettings:
    k: int = 20
    # Leave out items the user already interacted with (any event, or feedback other than impression).
    exclude_seen: bool = True
    # Popularity fallback (users without history): positive events in this window before the newest.
    popular_window: str = "30d"
    # Users scored per matrix product.
    batch_users: int = 2048


@dataclass
class EvaluateSettings:
    # Cut-offs K of HR@K, NDCG@K, Recall@K and coverage (comma-separated).
    k: str = "10,20"
    # Spark MLlib ALS peer (implicit prefs): the grid tried on the validation item, and iterations.
    als_ranks: str = "32,64"
    als_regs: str = "0.01,0.1"
    als_alphas: str = "1,10"
    als_iters: int = 10
    # Prequential: share of the events (in time) that bootstraps, window (event time such as 30d, or
    # a number of events), full retrain every N windows.
    bootstrap: float = 0.5
    window: str = "30d"
    retrain_every: int = 4
    # The popular peer counts positives in this long before each window.
    popular_window: str = "90d"
    # Recency-popularity prior blended into model scores: the half-lives of its decayed counts and
    # the blend weights (0 = the plain model) tried on validation: in prequential the last this
    # many windows before the bootstrap cut, run the way incremental runs; in loo the validation
    # item (where weights well below 0.5 do best on MovieLens: pass a finer list).
    prior_half_life: str = "30d,90d,180d,365d"
    prior_weights: str = "0,0.5,1,2,4"
    validation_windows: int = 3


@dataclass
class MaintainSettings:
    # `reco maintain` vacuums the files that no table version younger than this needs (whole hours).
    # Training reads the rows committed after a model's cursor from older versions: keep it longer
    # than the longest gap between two `reco train` runs (else: `reco train --full`).
    retention: str = "7d"


@dataclass
class Settings(JobSettings):
    data: DataSettings = field(default_factory=DataSettings)
    simulate: SimulateSettings = field(default_factory=SimulateSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    recommend: RecommendSettings = field(default_factory=RecommendSettings)
    evaluate: EvaluateSettings = field(default_factory=EvaluateSettings)
    maintain: MaintainSettings = field(default_factory=MaintainSettings)


def load_settings(
    config_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Defaults, then `config_file` (or $RECO_CONFIG), then RECO_* env vars, then `overrides`.

    `overrides` are dotted paths from CLI flags (`{"ingest.landing": "./in"}`); None values are
    ignored so that an unset flag never hides the file or the environment.
    """
    env = os.environ if env is None else env
    path = config_file or (Path(env["RECO_CONFIG"]) if env.get("RECO_CONFIG") else None)
    data = read_toml(path) if path is not None else {}
    return apply_layers(Settings(), data, str(path), env, overrides)
