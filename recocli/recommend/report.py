"""How served lists did: feedback joined to the lists it refers to, per model version and day."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from lakehouse import catalog, delta
from lakehouse.catalog import Warehouse
from lakehouse.files import atomic_file
from lakehouse.landing import served_lists
from lakehouse.schemas import HOLDOUT, POPULAR

ACTIONS = ("impression", "click", "like", "dislike")


def served_feedback(warehouse: Warehouse, landing: str | Path | None = None) -> pa.Table:
    """Feedback rows with the `variant` that served them: "v<N>" for model lists, "popular" for the
    fallback, "holdout" for the popular list served to held-out users the model knows (by rec_id from
    gold/recommendations and, with `landing`, the lists `reco serve` recorded there; the event's own
    model_version when the list is gone)."""
    feedback = delta.read_table(
        warehouse.uri(catalog.FEEDBACK),
        columns=["rec_id", "item_id", "action", "model_version", "event_date"],
    )
    if feedback is None or feedback.num_rows == 0:
        return pa.table(
            {
                "variant": pa.array([], pa.string()),
                "rec_id": pa.array([], pa.string()),
                "item_id": pa.array([], pa.string()),
                "action": pa.array([], pa.string()),
                "day": pa.array([], pa.date32()),
            }
        )
    served = delta.read_table(
        warehouse.uri(catalog.RECOMMENDATIONS), columns=["rec_id", "model_version", "strategy"]
    )
    if landing is not None:
        live = served_lists(landing).select(["rec_id", "model_version", "strategy"])
        served = live if served is None else pa.concat_tables([served, live.cast(served.schema)])
    if served is not None and served.num_rows:
        lists = served.group_by("rec_id").aggregate([("model_version", "max"), ("strategy", "min")])
        feedback = feedback.join(lists, "rec_id", join_type="left outer")
        version = pc.coalesce(feedback["model_version_max"], feedback["model_version"])
        strategy = feedback["strategy_min"]
    else:
        version, strategy = feedback["model_version"], pa.nulls(feedback.num_rows, pa.string())
    label = pc.binary_join_element_wise("v", pc.cast(version, pa.string()), "")
    popular = pc.is_in(strategy, value_set=pa.array([POPULAR, HOLDOUT])).fill_null(False)
    variant = pc.if_else(popular, strategy, label.fill_null("unknown"))
    return pa.table(
        {
            "variant": variant,
            "rec_id": feedback["rec_id"],
            "item_id": feedback["item_id"],
            "action": feedback["action"],
            "day": feedback["event_date"],
        }
    )


def feedback_report(warehouse: Warehouse, landing: str | Path | None = None) -> list[dict]:
    """One row per (variant, day): impressions, clicks, CTR, like and dislike rates, coverage."""
    rows = served_feedback(warehouse, landing)
    keys = ["variant", "day"]
    flags = rows.select(keys)
    for action in ACTIONS:
        flags = flags.append_column(action, pc.cast(pc.equal(rows["action"], action), pa.int64()))
    counts = flags.group_by(keys).aggregate([(action, "sum") for action in ACTIONS])
    shown = rows.filter(pc.equal(rows["action"], "impression"))
    distinct = shown.group_by(keys).aggregate([("item_id", "count_distinct")])
    merged = counts.join(distinct, keys, join_type="left outer").sort_by([(k, "ascending") for k in keys])
    catalog_items = _catalog_size(warehouse)
    out = []
    for row in merged.to_pylist():
        impressions = row["impression_sum"]

        def rate(count: int, impressions: int = impressions) -> float | None:
            return count / impressions if impressions else None

        out.append(
            {
                "variant": row["variant"],
                "day": row["day"].isoformat(),
                "impressions": impressions,
                "clicks": row["click_sum"],
                "ctr": rate(row["click_sum"]),
                "like_rate": rate(row["like_sum"]),
                "dislike_rate": rate(row["dislike_sum"]),
                "coverage": (row["item_id_count_distinct"] or 0) / catalog_items if catalog_items else None,
            }
        )
    return out


def _catalog_size(warehouse: Warehouse) -> int:
    items: set[str] = set()
    for spec in (catalog.EVENTS, catalog.ITEMS):
        table = delta.read_table(warehouse.uri(spec), columns=["item_id"])
        if table is not None:
            items.update(pc.unique(table["item_id"]).to_pylist())
    return len(items)


def plot_ctr(report: list[dict], path: Path) -> Path:
    """PNG of CTR per day, one line per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for variant in sorted({r["variant"] for r in report}):
        points = [(r["day"], r["ctr"]) for r in report if r["variant"] == variant and r["ctr"] is not None]
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=variant)
    ax.set_xlabel("day (event time)")
    ax.set_ylabel("CTR (clicks / impressions)")
    ax.set_title("CTR of served lists per model version")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as out:  # a PNG at exactly `path`, whatever its suffix
        fig.savefig(out, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
