"""Models in and out of the registry: lakehouse stores tensors and tables, this builds the models."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lakehouse.errors import RecoError
from lakehouse.registry import ModelRegistry
from recocli.config import MFSettings, SASRecSettings
from recocli.models import build_model
from recocli.models.base import Recommender
from recocli.models.vocab import Vocabs, Vocabulary


@dataclass
class ModelVersion:
    """A loaded version: the model (CPU, eval mode), its vocabularies and its metadata."""

    version: int
    model: Recommender
    vocabs: Vocabs
    metadata: dict[str, Any]

    @property
    def cursor(self) -> dict[str, int]:
        return dict(self.metadata.get("cursor", {}))


def load_version(registry: ModelRegistry, version: int | None = None) -> ModelVersion:
    """A version (default: latest) as a model, checksums verified first; nothing is unpickled."""
    stored = registry.read(version)
    meta = stored.metadata
    vocabs = Vocabs(*(Vocabulary.from_arrow(stored.tables[name]) for name in ("users", "items")))
    cfg = recorded_model_settings(meta["kind"], meta["config"]["model"])
    with torch.device("meta"):  # no random init of tables that the stored tensors replace
        model = build_model(meta["kind"], len(vocabs.users), len(vocabs.items), cfg)
    try:
        model.load_state_dict(stored.tensors, strict=True, assign=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise RecoError(f"model version {stored.version} does not fit its metadata: {first}") from None
    model.eval()
    return ModelVersion(stored.version, model, vocabs, meta)


# Versions published before each kind had its own section recorded one flat [model] table, where mf's
# fields were prefixed and its defaults were those below.
_FLAT_MF_DEFAULTS = {"dim": 64, "loss": "bce", "negatives": 8, "history": 0, "max_len": 50}


def recorded_model_settings(kind: str, recorded: dict[str, Any]) -> SASRecSettings | MFSettings:
    """The settings a version's model was built with, from its metadata's config.model:
    {"kind": …, "<kind>": {…}}, or the flat table of older versions."""
    cls = MFSettings if kind == "mf" else SASRecSettings
    values = recorded.get(kind)
    if not isinstance(values, dict):  # flat, before per-kind sections
        flat = {k.removeprefix("mf_"): v for k, v in recorded.items()} if kind == "mf" else recorded
        values = {**(_FLAT_MF_DEFAULTS if kind == "mf" else {}), **flat}
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in known})


def model_config(model: Recommender) -> dict[str, Any]:
    """What a version records as config.model: its kind and that kind's settings."""
    return {"kind": model.kind, model.kind: dataclasses.asdict(model.cfg)}


def publish_version(
    registry: ModelRegistry,
    model: Recommender,
    vocabs: Vocabs,
    metadata: dict[str, Any],
    parent: int | None,
    training_log: Path | None = None,
) -> int:
    """Publish a model and its vocabularies (and its training log folder) as the next version;
    returns its number."""
    sizes = {"kind": model.kind, "n_users": model.n_users, "n_items": model.n_items}
    tables = {"users": vocabs.users.to_arrow(), "items": vocabs.items.to_arrow()}
    return registry.publish(model.state_dict(), tables, {**metadata, **sizes}, parent, training_log)
