"""Recommendation models, one readable file each (no pyspark: they train on a GPU box without a JVM).

Importing this package is cheap; torch and Lightning load with the model modules themselves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lakehouse.errors import RecoError
from recocli.config import ModelSettings

if TYPE_CHECKING:
    from recocli.models.base import Recommender

KINDS = ("mf", "sasrec")


def build_model(kind: str, n_users: int, n_items: int, cfg: ModelSettings) -> Recommender:
    """A fresh model of `kind` with rows for `n_users` users and `n_items` items."""
    if kind == "mf":
        from recocli.models.mf import MF

        return MF(n_users, n_items, cfg)
    if kind == "sasrec":
        from recocli.models.sasrec import SASRec

        return SASRec(n_users, n_items, cfg)
    raise RecoError(f"model.kind must be one of {', '.join(KINDS)}, got {kind!r}")
