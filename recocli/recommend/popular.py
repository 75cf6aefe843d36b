"""The popularity fallback: most-interacted items (positive weight) in a recent window of event time."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def popular_items(interactions: pa.Table, window_s: float) -> tuple[list[str], np.ndarray]:
    """Item ids by summed positive weight within `window_s` before the newest interaction, best first.

    Event time, not wall time, so replayed and historical data behave like live data.
    """
    positives = interactions.filter(pc.equal(interactions["label"], 1))
    if positives.num_rows == 0:
        return [], np.zeros(0)
    newest = pc.max(positives["ts"]).value
    since = pa.scalar(newest - int(window_s * 1_000_000), pa.timestamp("us", tz="UTC"))
    recent = positives.filter(pc.greater_equal(positives["ts"], since))
    totals = recent.group_by("item_id").aggregate([("weight", "sum")])
    order = np.lexsort((totals["item_id"].to_numpy(zero_copy_only=False), -totals["weight_sum"].to_numpy()))
    return totals["item_id"].take(order).to_pylist(), totals["weight_sum"].to_numpy()[order]
