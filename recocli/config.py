"""One typed configuration: defaults (here only; conf/reco.toml is tested equal), a TOML file, RECO_* env
vars, flags.

Only this module (through lakehouse.settings) reads config files and RECO_* variables; everything else
receives a `Settings`. Env names follow the TOML path: `ingest.max_files_per_batch` is
`RECO_INGEST_MAX_FILES_PER_BATCH`, `warehouse` is `RECO_WAREHOUSE`. The ingest and Spark sections are
spark_jobs' own (spark_jobs.settings); `Settings` extends them. Values are parsed once, at load, into
their types (lakehouse.settings: Duration, Size, Literal choices, tuple lists); each model kind has its
own section ([model.sasrec], [model.mf]) and its own training hyperparameters ([train.sasrec],
[train.mf]), whose defaults are the best settings found on MovieLens (docs/results.md).
"""

from __future__ import annotations

import math
import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lakehouse.errors import RecoError
from lakehouse.settings import Duration, Size, apply_layers, read_toml
from spark_jobs.settings import JobSettings


class HalfLife(Duration):
    """A decay half-life: a duration, or 'all' (no decay: infinite)."""

    allows_infinity = True

    def __new__(cls, value: str | float) -> HalfLife:
        if str(value).strip() in ("all", "inf"):
            return float.__new__(cls, math.inf)
        return super().__new__(cls, value)

    def __str__(self) -> str:
        return "all" if math.isinf(self) else super().__str__()

    __repr__ = __str__


class Weight(float):
    """A blend weight: a number, or inf (the prior alone)."""

    allows_infinity = True

    def __str__(self) -> str:
        return f"{float(self):g}"

    __repr__ = __str__


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
    replay_flush: Duration = Duration("1s")


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
    round_span: Duration = Duration("10m")

    def check(self) -> None:
        _at_least("simulate", self, users=1, items=1, dims=1, new_items_per_round=0)
        _seed("simulate", self.seed)


ModelKind = Literal["sasrec", "mf"]


@dataclass
class SASRecSettings:
    """sasrec: a causal Transformer over each user's recent items."""

    dim: int = 64
    blocks: int = 2
    heads: int = 2
    # Longest history it reads (and remembers per user).
    max_len: int = 50
    dropout: float = 0.2
    # 0 = full softmax over the catalog; N = sampled softmax with N shared random negatives.
    sampled_negatives: int = 0

    def check(self) -> None:
        _at_least("model.sasrec", self, dim=1, blocks=1, heads=1, max_len=1, sampled_negatives=0)
        if not 0.0 <= self.dropout < 1.0:
            raise RecoError(f"model.sasrec.dropout must be in [0, 1), got {self.dropout}")
        if self.dim % self.heads:
            raise RecoError(
                f"model.sasrec.dim ({self.dim}) must be a multiple of model.sasrec.heads ({self.heads})"
            )


@dataclass
class MFSettings:
    """mf: matrix factorisation, with an optional history term."""

    dim: int = 256
    # "softmax" (full softmax over the catalog on positives, as sasrec; stronger full-ranking results on
    # MovieLens) or "bce" (pointwise: positives, explicit and sampled negatives).
    loss: Literal["softmax", "bce"] = "softmax"
    # bce: random negatives per positive.
    negatives: int = 8
    # 0 = classic MF; N = the user's vector also adds the mean of their N latest positives' context
    # vectors (SVD++ style), so mf reads a fresh history at serving time as sasrec does.
    history: int = 10
    # Positives remembered per user (the history term reads the latest `history` of them).
    max_len: int = 50

    def check(self) -> None:
        _at_least("model.mf", self, dim=1, negatives=0, history=0, max_len=1)


@dataclass
class ModelSettings:
    # Which kind `reco train` trains: "sasrec" or "mf"; each has its own section below.
    kind: ModelKind = "sasrec"
    sasrec: SASRecSettings = field(default_factory=SASRecSettings)
    mf: MFSettings = field(default_factory=MFSettings)

    def of(self, kind: ModelKind | None = None) -> SASRecSettings | MFSettings:
        """The settings of `kind` (default: the configured kind)."""
        return getattr(self, kind or self.kind)


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
class KindTraining:
    """How a full training fits one model kind (each kind has its own best values)."""

    lr: float
    weight_decay: float
    # Most epochs (early stopping ends it sooner when validating).
    epochs: int
    # Users whose last interaction (a first-time item) is held out for validation and early stopping;
    # 0 = none: train on every positive for exactly `epochs` epochs.
    val_users: int


@dataclass
class TrainSettings:
    # Full training, per kind; the defaults are the best found on MovieLens leave-last-out, where
    # training on every positive for a fixed number of epochs (val_users = 0) did best.
    sasrec: KindTraining = field(default_factory=lambda: KindTraining(0.001, 0.1, epochs=18, val_users=0))
    mf: KindTraining = field(default_factory=lambda: KindTraining(0.001, 0.1, epochs=20, val_users=0))
    # Early-stopping patience (epochs without a better validation HR@10), when validating.
    patience: int = 3
    # An epoch on small data repeats it until it holds this many batches (so patience means something).
    min_epoch_steps: int = 20
    # Incremental fine-tune: small learning rate, few passes over new rows + replay.
    finetune_lr: float = 0.001
    finetune_epochs: int = 3
    # sasrec fine-tunes: each position learns a random later positive of its user more than this
    # long after it (the next one where there is none): a served list is judged on a later visit,
    # not on the next click of the same sitting. 0 = the next item. Full training keeps the next
    # item (leave-last-out's task).
    finetune_target_gap: Duration = Duration("1d")
    # Small batches: more steps from the few rows of a micro-batch; a bigger micro-batch gets bigger
    # batches so that one pass stays at most finetune_steps steps.
    finetune_batch_size: int = 64
    finetune_steps: int = 32
    # Rows new in a fine-tune's batch start at their company's mean and move this many times faster.
    new_row_lr_scale: float = 10.0
    batch_size: int = 256
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

    def of(self, kind: ModelKind) -> KindTraining:
        """The full-training hyperparameters of `kind`."""
        return getattr(self, kind)

    def check(self) -> None:
        _at_least(
            "train",
            self,
            patience=0,
            min_epoch_steps=1,
            batch_size=1,
            finetune_epochs=1,
            finetune_batch_size=1,
            finetune_steps=1,
            min_count=1,
            replay_size=0,
            threads=0,
        )
        _seed("train", self.seed)
        if self.finetune_lr <= 0:
            raise RecoError(f"train.finetune_lr must be > 0, got {self.finetune_lr}")
        for kind in typing.get_args(ModelKind):
            fit = self.of(kind)
            _at_least(f"train.{kind}", fit, epochs=1, val_users=0)
            if fit.lr <= 0 or fit.weight_decay < 0:
                raise RecoError(
                    f"train.{kind}: lr must be > 0 and weight_decay ≥ 0, got {fit.lr}, {fit.weight_decay}"
                )


@dataclass
class RecommendSettings:
    k: int = 20
    # Leave out items the user already interacted with (any event, or feedback other than impression).
    exclude_seen: bool = True
    # Users scored per matrix product.
    batch_users: int = 256


@dataclass
class RankSettings:
    """The ranker (recocli.recommend.ranker): model scores blended with time-decayed popularity,
    which alone serves users the model knows nothing about. Every training chooses the half-life
    and the weight among these on the newest rows, scored before the model learns them."""

    # Half-lives of the decayed positive counts kept per item ("all": no decay).
    half_lives: tuple[HalfLife, ...] = tuple(HalfLife(d) for d in ("1d", "7d", "30d", "90d", "365d", "all"))
    # Weights of log P_recent added to log_softmax(model scores); 0: the model alone, inf: popularity alone.
    weights: tuple[Weight, ...] = tuple(Weight(w) for w in (0, 0.25, 0.5, 1, 2, 4, 8, "inf"))
    # Weights of log(1 + days since an item's first event) taken off its log P_recent: 0 ignores
    # age; more puts newer items ahead of older ones that are as popular lately.
    age_weights: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0)
    # Full training learns all but this newest share of the interactions first, to choose on it.
    choose_share: float = 0.1
    # At most this many users scored per choice (the first by a stable hash of their id).
    choose_users: int = 2000
    # And at most this many user × item scores per blend (fewer users on a large catalog): each
    # choice scores every blend on the grid, so this bounds its cost per micro-batch.
    choose_scores: int = 10_000_000

    def check(self) -> None:
        if not self.half_lives or min(self.half_lives) <= 0:
            raise RecoError("rank.half_lives must list durations longer than 0 or 'all'")
        if not self.weights or any(math.isnan(w) or w < 0 for w in self.weights):
            raise RecoError("rank.weights must list weights ≥ 0 or inf")
        if not self.age_weights or any(not 0 <= w < math.inf for w in self.age_weights):
            raise RecoError("rank.age_weights must list finite weights ≥ 0")
        if not 0 <= self.choose_share < 1:
            raise RecoError(f"rank.choose_share must be in [0, 1), got {self.choose_share}")
        _at_least("rank", self, choose_users=1, choose_scores=1)


@dataclass
class EvaluateSettings:
    # Cut-offs K of HR@K, NDCG@K, Recall@K and coverage.
    k: tuple[int, ...] = (10, 20)
    # Spark MLlib ALS peer (implicit prefs): the grid tried on the validation item, and iterations.
    als_ranks: tuple[int, ...] = (32, 64)
    als_regs: tuple[float, ...] = (0.01, 0.1)
    als_alphas: tuple[float, ...] = (1.0, 10.0)
    als_iters: int = 10
    # Prequential: share of the events (in time) that bootstraps, window (event time such as 30d, or
    # a number of events), full retrain every N windows.
    bootstrap: float = 0.5
    window: str = "30d"
    retrain_every: int = 4
    # The popular peer counts positives in this long before each window.
    popular_window: Duration = Duration("90d")

    def check(self) -> None:
        if not self.k or min(self.k) < 1:
            raise RecoError(f"evaluate.k must list positive cut-offs, got {list(self.k)}")


@dataclass
class ServeSettings:
    """`reco serve`: lists over HTTP, events and feedback in (docs/serve.md)."""

    host: str = "127.0.0.1"
    port: int = 8000
    # Bearer token the write routes (POST /events, /feedback) require; or RECO_SERVE_TOKEN. Empty:
    # the service refuses to start unless given --no-auth on a loopback host.
    token: str = ""
    # List length of GET /recommendations when ?k is not given, and the most ?k may ask for.
    k: int = 10
    max_k: int = 100
    # Most GET requests scored together in one batch (those that arrive while a batch is scored).
    max_batch: int = 64
    # Largest request body and most records per POST (larger: 413).
    max_body: Size = Size("1MB")
    max_records: int = 1000
    # Accepted requests are written together: at most one landing file per folder this often, or
    # sooner once landing_file_size is waiting; each file is fsync'd and renamed into place before
    # the requests in it are answered 202.
    landing_interval: Duration = Duration("50ms")
    landing_file_size: Size = Size("16MB")
    # The lists served are recorded under <landing>/served/ in one file at most this often.
    served_interval: Duration = Duration("1s")
    # How often the service looks for a new model version (or rollback) and new bronze commits: a look
    # that finds nothing costs a few stat calls (0.3 ms), a commit is read for what it added (0.07 s).
    refresh: Duration = Duration("250ms")
    # Per user, the events of the newest this many accepted requests are kept in memory until ingest
    # has committed them (read-your-writes).
    pending_per_user: int = 200

    def check(self) -> None:
        if not 1 <= self.k <= self.max_k:
            raise RecoError(f"serve.k must be between 1 and serve.max_k ({self.max_k}), got {self.k}")


@dataclass
class MaintainSettings:
    # `reco maintain` vacuums the files that no table version younger than this needs (whole hours).
    # Training reads the rows committed after a model's cursor from older versions: keep it longer
    # than the longest gap between two `reco train` runs (else: `reco train --full`).
    retention: Duration = Duration("7d")

    def check(self) -> None:
        # delta-rs vacuums in whole hours: 90m would silently become 1h, and 30m nothing kept at all.
        if self.retention % 3600:
            raise RecoError(f"maintain.retention must be whole hours (e.g. 48h, 7d), got {self.retention}")


@dataclass
class Settings(JobSettings):
    data: DataSettings = field(default_factory=DataSettings)
    simulate: SimulateSettings = field(default_factory=SimulateSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    recommend: RecommendSettings = field(default_factory=RecommendSettings)
    rank: RankSettings = field(default_factory=RankSettings)
    evaluate: EvaluateSettings = field(default_factory=EvaluateSettings)
    serve: ServeSettings = field(default_factory=ServeSettings)
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


def _seed(section: str, seed: int) -> None:
    """numpy and torch take seeds in [0, 2**32): anything else failed deep inside a run."""
    if not 0 <= seed < 2**32:
        raise RecoError(f"{section}.seed must be between 0 and {2**32 - 1}, got {seed}")


def _at_least(section: str, values: Any, **minimum: int) -> None:
    """One line naming the first field of `values` below its minimum."""
    for name, low in minimum.items():
        if getattr(values, name) < low:
            raise RecoError(f"{section}.{name} must be at least {low}, got {getattr(values, name)}")
