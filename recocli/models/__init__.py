"""Recommendation models, one readable file each (no pyspark: they train on a GPU box without a JVM).

Importing this package is cheap; torch and Lightning load with the model modules themselves.
"""

from __future__ import annotations

import typing
from typing import TYPE_CHECKING

from lakehouse.errors import RecoError
from recocli.config import MFSettings, ModelKind, SASRecSettings

if TYPE_CHECKING:
    from recocli.models.base import Recommender

KINDS = typing.get_args(ModelKind)


def build_model(kind: str, n_users: int, n_items: int, cfg: SASRecSettings | MFSettings) -> Recommender:
    """A fresh model of `kind` (its own settings `cfg`) with rows for `n_users` users and `n_items` items."""
    if kind == "mf" and isinstance(cfg, MFSettings):
        from recocli.models.mf import MF

        return MF(n_users, n_items, cfg)
    if kind == "sasrec" and isinstance(cfg, SASRecSettings):
        from recocli.models.sasrec import SASRec

        return SASRec(n_users, n_items, cfg)
    raise RecoError(f"model.kind must be one of {', '.join(KINDS)}, got {kind!r}")
