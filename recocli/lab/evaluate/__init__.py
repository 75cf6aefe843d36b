"""`reco evaluate`: offline (leave-last-out) and real-time (prequential) evaluation against peers.

source (bronze tables or a MovieLens folder → interactions), metrics (pure NumPy/torch), split
(leave-last-out, prequential windows), peers (popularity, the common catalog), loo and
prequential (the protocols), report (metrics.json, summary.md, plots). The recency-popularity
prior the models blend in lives with the models (recocli.models.prior).
Spark MLlib ALS lives in spark_jobs.als and is imported only when asked for (no JVM on a GPU box).
"""

from __future__ import annotations

from lakehouse.errors import RecoError

# What each protocol can compare: our model kinds and the peers (prior: the recency prior alone);
# served runs the ranker of model.kind against its own peers.
PEERS = {"loo": ("pop", "als", "prior"), "prequential": ("pop",), "served": ("ranker",)}


def check_models(protocol: str, models: list[str]) -> None:
    """Every name a model the protocol runs: checked before any data is read or model trained."""
    from recocli.models import KINDS

    for name in models:
        if name == "als" and protocol != "loo":
            raise RecoError("als runs in --protocol loo only (a Spark refit per window is no real-time peer)")
        if name not in (*KINDS, *PEERS[protocol]):
            raise RecoError(
                f"unknown model {name!r}: --protocol {protocol} runs {', '.join((*KINDS, *PEERS[protocol]))}"
            )


def blend_info(half_life_s: float, weight: float, age_weight: float) -> dict[str, float]:
    """A ranker's chosen blend as every protocol reports it (the report's summary reads these keys)."""
    return {"weight": weight, "half_life_days": half_life_s / 86400, "age_weight": age_weight}
