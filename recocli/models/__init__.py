"""Recommendation models (no pyspark here: they train on a GPU box without a JVM)."""

from __future__ import annotations

from recocli.config import ModelSettings
from recocli.errors import RecoError
from recocli.models.base import PAD, Recommender
from recocli.models.mf import MF
from recocli.models.sasrec import SASRec

MODELS: dict[str, type[Recommender]] = {MF.kind: MF, SASRec.kind: SASRec}


def build_model(kind: str, n_users: int, n_items: int, cfg: ModelSettings) -> Recommender:
    """A fresh model of `kind` with rows for `n_users` users and `n_items` items."""
    if kind not in MODELS:
        raise RecoError(f"model.kind must be one of {', '.join(sorted(MODELS))}, got {kind!r}")
    return MODELS[kind](n_users, n_items, cfg)


__all__ = ["MF", "MODELS", "PAD", "Recommender", "SASRec", "build_model"]
