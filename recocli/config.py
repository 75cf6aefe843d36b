"""One typed configuration: defaults (mirrored in conf/reco.toml), a TOML file, RECO_* env vars, flags.

Only this module reads config files and RECO_* variables; everything else receives a `Settings`.
Env names follow the TOML path: `ingest.max_files_per_batch` is `RECO_INGEST_MAX_FILES_PER_BATCH`,
`warehouse` is `RECO_WAREHOUSE`.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recocli.errors import RecoError

ENV_PREFIX = "RECO"


@dataclass
class SparkSettings:
    master: str = "local[*]"
    app_name: str = "reco"
    log_level: str = "ERROR"
    # Extra Spark conf, e.g. {"spark.driver.memory" = "4g"}.
    conf: dict[str, str] = field(default_factory=dict)


@dataclass
class KafkaSettings:
    bootstrap_servers: str = ""
    events_topic: str = "reco.events"
    feedback_topic: str = "reco.feedback"
    starting_offsets: str = "earliest"
    # Most records per micro-batch (0 = no cap): each batch passes through the driver as Arrow, so an
    # uncapped backlog from "earliest" could outgrow it (about 175 bytes per bench line).
    max_offsets_per_batch: int = 1000000
    # Passed through as reader options, e.g. {"kafka.security.protocol" = "SASL_SSL"}.
    options: dict[str, str] = field(default_factory=dict)


@dataclass
class IngestSettings:
    landing: str = "./landing"
    # "files" (JSON lines under <landing>/events and <landing>/feedback) or "kafka".
    source: str = "files"
    # Empty: <warehouse>/_checkpoints/<query_name>.
    checkpoint: str = ""
    query_name: str = "reco_ingest"
    interval: str = "1s"
    # Most landed bytes one micro-batch reads from each landing folder ("0": no cap). Each batch passes
    # through the driver as Arrow (dedup runs there): uncapped, a backlog of 7M lines outgrew Spark's
    # 1 GiB result limit and failed, the same way at every rerun.
    max_bytes_per_batch: str = "128MB"
    # Most files per micro-batch instead (0: none). Spark's file source takes one cap, so a file cap
    # replaces the byte cap.
    max_files_per_batch: int = 0
    # "auto" (Spark's delta sink when Delta's jars are on the classpath, else delta-rs),
    # "delta-rs" or "spark-delta".
    writer: str = "auto"
    min_event_time: str = "1995-01-01T00:00:00Z"
    max_future: str = "1d"
    max_line_bytes: int = 65536
    kafka: KafkaSettings = field(default_factory=KafkaSettings)


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
class Settings:
    warehouse: str = "./warehouse"
    ingest: IngestSettings = field(default_factory=IngestSettings)
    spark: SparkSettings = field(default_factory=SparkSettings)
    data: DataSettings = field(default_factory=DataSettings)
    simulate: SimulateSettings = field(default_factory=SimulateSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    recommend: RecommendSettings = field(default_factory=RecommendSettings)
    evaluate: EvaluateSettings = field(default_factory=EvaluateSettings)

    @property
    def warehouse_path(self) -> Path:
        return Path(self.warehouse).expanduser().resolve()


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
    settings = Settings()
    path = config_file or (Path(env["RECO_CONFIG"]) if env.get("RECO_CONFIG") else None)
    if path is not None:
        if not path.is_file():
            raise RecoError(f"config file not found: {path}")
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise RecoError(f"config file {path} is not valid TOML: {exc}") from None
        _apply_mapping(settings, data, source=str(path))
    _apply_env(settings, env, ENV_PREFIX)
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set_path(settings, dotted.split("."), value, source="command line")
    return settings


def parse_size(text: str | int) -> int:
    """Bytes from '512KB', '128MB', '2GB' (powers of 1024) or a bare number of bytes."""
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*(\d+)\s*([kmg]i?b?|b)?\s*", str(text), re.IGNORECASE)
    if not match:
        raise RecoError(f"not a size: {text!r} (examples: 512KB, 128MB, 2GB)")
    unit = (match.group(2) or "b")[0].lower()
    return int(match.group(1)) * {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[unit]


def parse_duration(text: str | float | int) -> float:
    """Seconds from '250ms', '1s', '5m', '2h', '1d', '1w' or a bare number of seconds."""
    if isinstance(text, int | float):
        return float(text)
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*", str(text))
    if not match:
        raise RecoError(f"not a duration: {text!r} (examples: 500ms, 1s, 5m, 2h, 1d)")
    number, unit = float(match.group(1)), match.group(2) or "s"
    return number * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]


def _apply_mapping(target: Any, data: Mapping[str, Any], source: str, prefix: str = "") -> None:
    fields = {f.name: f for f in dataclasses.fields(target)}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if key not in fields:
            raise RecoError(f"unknown setting '{name}' in {source}")
        current = getattr(target, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, Mapping):
                raise RecoError(f"setting '{name}' in {source} must be a table")
            _apply_mapping(current, value, source, prefix=f"{name}.")
        else:
            setattr(target, key, _coerce(value, _field_type(target, key), name, source))


def _apply_env(target: Any, env: Mapping[str, str], prefix: str, dotted: str = "") -> None:
    for f in dataclasses.fields(target):
        var = f"{prefix}_{f.name.upper()}"
        current = getattr(target, f.name)
        if dataclasses.is_dataclass(current):
            _apply_env(current, env, var, f"{dotted}{f.name}.")
        elif var in env:
            value = _coerce(env[var], _field_type(target, f.name), f"{dotted}{f.name}", var)
            setattr(target, f.name, value)


def _set_path(target: Any, parts: list[str], value: Any, source: str) -> None:
    for part in parts[:-1]:
        target = getattr(target, part)
    setattr(target, parts[-1], _coerce(value, _field_type(target, parts[-1]), ".".join(parts), source))


def _field_type(target: Any, name: str) -> Any:
    return typing.get_type_hints(type(target))[name]


def _coerce(value: Any, kind: Any, name: str, source: str) -> Any:
    origin = typing.get_origin(kind)
    if origin in (dict, Mapping):
        if isinstance(value, str):
            raise RecoError(f"setting '{name}' from {source} must be a table, not a string")
        return {str(k): str(v) for k, v in dict(value).items()}
    if isinstance(kind, types.UnionType):
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("1", "true", "yes", "on"):
                return True
            if str(value).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        return kind(value)
    except (TypeError, ValueError):
        raise RecoError(f"setting '{name}' from {source} must be {kind.__name__}, got {value!r}") from None
