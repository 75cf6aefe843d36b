"""Where every table, checkpoint, lock and model lives inside a warehouse."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from lakehouse import schemas
from lakehouse.errors import RecoError


@dataclass(frozen=True)
class TableSpec:
    name: str
    schema: pa.Schema
    partition_by: tuple[str, ...] = ()


EVENTS = TableSpec("bronze/events", schemas.EVENTS, ("event_date",))
FEEDBACK = TableSpec("bronze/feedback", schemas.FEEDBACK, ("event_date",))
QUARANTINE = TableSpec("bronze/quarantine", schemas.QUARANTINE)
INGEST_METRICS = TableSpec("_ops/ingest_metrics", schemas.INGEST_METRICS)
# One partition and one commit per run: a reader sees whole runs only, and finds the newest cheaply.
RECOMMENDATIONS = TableSpec("gold/recommendations", schemas.RECOMMENDATIONS, ("run_id",))
# Each user's newest list (the rows of the newest run that served them), merged on user_id by every run.
LATEST_RECOMMENDATIONS = TableSpec("gold/latest_recommendations", schemas.RECOMMENDATIONS)
BLOCKLIST = TableSpec("reference/blocklist", schemas.BLOCKLIST)
ITEMS = TableSpec("reference/items", schemas.ITEMS)

BRONZE_TABLES = (EVENTS, FEEDBACK, QUARANTINE)
INGEST_TABLES = (EVENTS, FEEDBACK, QUARANTINE, INGEST_METRICS)
ALL_TABLES = (*INGEST_TABLES, RECOMMENDATIONS, LATEST_RECOMMENDATIONS, ITEMS, BLOCKLIST)


class Warehouse:
    """A warehouse root folder. Others ask it for paths; nobody builds them by hand."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()

    def require(self) -> Warehouse:
        """Itself, when its folder exists: a typo in --warehouse must fail (exit 2), not create a new
        warehouse or report an empty one. Creating one is explicit (`reco init`, `reco data import`)."""
        if not self.root.is_dir():
            raise RecoError(
                f"no warehouse at {self.root}: give the right --warehouse (or $RECO_WAREHOUSE), "
                f"or create one with `reco init --warehouse {self.root}`"
            )
        return self

    def uri(self, table: TableSpec) -> str:
        return str(self.root / table.name)

    def checkpoint(self, query_name: str) -> Path:
        return self.root / "_checkpoints" / query_name

    def lock(self, name: str) -> Path:
        return self.root / "_locks" / f"{name}.lock"

    @property
    def models(self) -> Path:
        return self.root / "models"
