"""Models in and out of the registry: lakehouse stores tensors and tables, this builds the models."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lakehouse.errors import RecoError
from lakehouse.registry import ModelRegistry
from recocli.config import ModelSettings
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
    known = {f.name for f in dataclasses.fields(ModelSettings)}
    cfg = ModelSettings(**{k: v for k, v in meta["config"]["model"].items() if k in known})
    model = build_model(meta["kind"], len(vocabs.users), len(vocabs.items), cfg)
    try:
        model.load_state_dict(stored.tensors, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise RecoError(f"model version {stored.version} does not fit its metadata: {first}") from None
    model.eval()
    return ModelVersion(stored.version, model, vocabs, meta)


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
