"""`reco evaluate`: offline (leave-last-out) and real-time (prequential) evaluation against peers.

source (bronze tables or a MovieLens folder → interactions), metrics (pure NumPy/torch), split
(leave-last-out, prequential windows), peers (popularity, the common catalog), loo and
prequential (the protocols), report (metrics.json, summary.md, plots). The recency-popularity
prior the models blend in lives with the models (recocli.models.prior).
Spark MLlib ALS lives in spark_jobs.als and is imported only when asked for (no JVM on a GPU box).
"""

from __future__ import annotations

from collections.abc import Callable

from lakehouse.errors import RecoError
from lakehouse.settings import parse_duration
from recocli.config import EvaluateSettings

# What each protocol can compare: our model kinds and the peers (prior: the recency prior alone).
PEERS = {"loo": ("pop", "als", "prior"), "prequential": ("pop",)}


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


def parse_list(text: str, kind: Callable = float) -> list:
    """'10,20' → [10, 20] (RecoError naming the text when an element does not parse)."""
    try:
        return [kind(part) for part in str(text).split(",") if part.strip()]
    except ValueError:
        raise RecoError(f"expected a comma-separated list of {kind.__name__}, got {text!r}") from None


def prior_grid(cfg: EvaluateSettings) -> tuple[list[float], list[float]]:
    """The recency prior's half-lives (seconds) and blend weights to try, as configured
    (evaluate.prior_half_life, evaluate.prior_weights); both protocols choose among them."""
    half_lives = [parse_duration(t) for t in cfg.prior_half_life.split(",") if t.strip()]
    weights = parse_list(cfg.prior_weights, float)
    if not half_lives or any(h <= 0 for h in half_lives) or any(w < 0 for w in weights):
        raise RecoError(
            f"evaluate.prior_half_life must list positive durations and evaluate.prior_weights weights ≥ 0, "
            f"got {cfg.prior_half_life!r} and {cfg.prior_weights!r}"
        )
    return half_lives, weights
