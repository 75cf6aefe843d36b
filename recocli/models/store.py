"""Models in and out of the registry: lakehouse stores tensors and tables, this builds the models."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from lakehouse.errors import RecoError
from lakehouse.registry import ModelRegistry
from recocli.config import ModelSettings
from recocli.models import build_model
from recocli.models.base import Recommender
from recocli.models.prior import RankerState
from recocli.models.vocab import Vocabs, Vocabulary

RANKER_PREFIX = "ranker."


@dataclass
class ModelVersion:
    """A loaded version: the model (CPU, eval mode), its vocabularies, its metadata and its ranker's
    state (None in versions published before rankers)."""

    version: int
    model: Recommender
    vocabs: Vocabs
    metadata: dict[str, Any]
    ranker: RankerState | None = None

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
    ranker_tensors = {k: v for k, v in stored.tensors.items() if k.startswith(RANKER_PREFIX)}
    try:
        model_tensors = {k: v for k, v in stored.tensors.items() if k not in ranker_tensors}
        model.load_state_dict(model_tensors, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise RecoError(f"model version {stored.version} does not fit its metadata: {first}") from None
    model.eval()
    ranker = RankerState.from_stored(ranker_tensors, meta["ranker"]) if ranker_tensors else None
    return ModelVersion(stored.version, model, vocabs, meta, ranker)


def publish_version(
    registry: ModelRegistry,
    model: Recommender,
    vocabs: Vocabs,
    metadata: dict[str, Any],
    parent: int | None,
    ranker: RankerState | None = None,
) -> int:
    """Publish a model, its vocabularies and its ranker's state as the next version; returns its
    number. The ranker's tensors go into the model's safetensors file, its choice into metadata."""
    sizes = {"kind": model.kind, "n_users": model.n_users, "n_items": model.n_items}
    tables = {"users": vocabs.users.to_arrow(), "items": vocabs.items.to_arrow()}
    tensors = dict(model.state_dict())
    if ranker is not None:
        tensors.update(ranker.tensors())
        metadata = {**metadata, "ranker": ranker.metadata()}
    return registry.publish(tensors, tables, {**metadata, **sizes}, parent)
