"""The settings Spark jobs own: the Spark session, and ingest from landing files or Kafka.

`reco` composes them into its own settings (recocli.config); spark-submit loads them alone from the
same config file, leaving the other tables of that file to `reco`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lakehouse.errors import RecoError
from lakehouse.settings import Duration, Size, apply_layers, read_toml


@dataclass
class SparkSettings:
    master: str = "local[*]"
    app_name: str = "reco"
    log_level: Literal["ALL", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF"] = "ERROR"
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
    source: Literal["files", "kafka"] = "files"
    # Empty: <warehouse>/_checkpoints/<query_name>.
    checkpoint: str = ""
    query_name: str = "reco_ingest"
    interval: Duration = Duration("1s")
    # Most landed bytes one micro-batch reads from each landing folder (0: no cap). Each batch passes
    # through the driver as Arrow (dedup runs there): uncapped, a backlog of 7M lines outgrew Spark's
    # 1 GiB result limit and failed, the same way at every rerun.
    max_bytes_per_batch: Size = Size("128MB")
    # Most files per micro-batch instead (0: none). Spark's file source takes one cap, so a file cap
    # replaces the byte cap.
    max_files_per_batch: int = 0
    # "auto" (Spark's delta sink when Delta's jars are on the classpath, else delta-rs),
    # "delta-rs" or "spark-delta".
    writer: Literal["auto", "delta-rs", "spark-delta"] = "auto"
    min_event_time: str = "1995-01-01T00:00:00Z"
    max_future: Duration = Duration("1d")
    max_line_bytes: int = 65536
    # How far apart in event time two events with one event_id still count as one (e.g. "7d", rounded
    # up to whole days): ingest holds the ids of the event dates within it of each batch, so its memory
    # and start follow the events of this span, not the table's history (docs/ingest.md).
    dedup_horizon: Duration = Duration("7d")
    # Symbolic links in landing: "never" followed (set aside in <kind>/_refused/), or "inside_landing":
    # one whose target is a regular file inside the landing folder is read once, as that file
    # (docs/ingest.md).
    follow_links: Literal["never", "inside_landing"] = "never"
    kafka: KafkaSettings = field(default_factory=KafkaSettings)

    def check(self) -> None:
        if self.max_files_per_batch < 0:
            raise RecoError(f"ingest.max_files_per_batch must be 0 or more, got {self.max_files_per_batch}")

    @property
    def follows_links(self) -> bool:
        """Whether links whose target is inside the landing folder are read (follow_links)."""
        return self.follow_links == "inside_landing"


@dataclass
class JobSettings:
    """What a Spark job needs: the warehouse, ingest and Spark."""

    warehouse: str = "./warehouse"
    ingest: IngestSettings = field(default_factory=IngestSettings)
    spark: SparkSettings = field(default_factory=SparkSettings)

    def check(self) -> None:
        if not self.warehouse.strip():
            raise RecoError(
                "setting 'warehouse' is empty: name the warehouse folder (RECO_WAREHOUSE, --warehouse)"
            )
        if self.warehouse_path.exists() and not self.warehouse_path.is_dir():
            raise RecoError(f"warehouse {self.warehouse_path} is a file, not a folder")

    @property
    def warehouse_path(self) -> Path:
        return Path(self.warehouse).expanduser().resolve()


def load_job_settings(
    config_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> JobSettings:
    """As recocli.config.load_settings, for a job run by spark-submit: tables of the config file that
    belong to the rest of reco ([train], [model] …) are left to it."""
    env = os.environ if env is None else env
    path = config_file or (Path(env["RECO_CONFIG"]) if env.get("RECO_CONFIG") else None)
    data = read_toml(path) if path is not None else {}
    others = frozenset(k for k, v in data.items() if isinstance(v, Mapping))
    return apply_layers(JobSettings(), data, str(path), env, overrides, ignore_sections=others)
