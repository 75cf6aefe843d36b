"""Models in and out of the registry: lakehouse stores tensors and tables, this builds the models."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from lakehouse.errors import RecoError
from lakehouse.registry import ModelRegistry
from recocli.config import ModelSettings
from recocli.models import KINDS, build_model
from recocli.models.base import Recommender
from recocli.models.vocab import Vocabs, Vocabulary

# What a stored model's config may hold: far beyond any model we train, far below an allocation that
# would exhaust memory (a tampered dim = 20000 or max_len = 1e9 is refused before anything is built).
INT_LIMITS = {
    "dim": (1, 4096),
    "blocks": (1, 64),
    "heads": (1, 64),
    "max_len": (1, 100_000),
    "sampled_negatives": (0, 10_000_000),
    "mf_negatives": (0, 100_000),
    "mf_history": (0, 100_000),
}
CHOICES = {"kind": KINDS, "mf_loss": ("bce", "softmax")}


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
    cfg = _checked_config(meta, stored.version, vocabs)
    _check_shapes(meta["kind"], cfg, vocabs, stored)
    model = build_model(meta["kind"], len(vocabs.users), len(vocabs.items), cfg)
    try:
        model.load_state_dict(stored.tensors, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise RecoError(f"model version {stored.version} does not fit its metadata: {first}") from None
    model.eval()
    return ModelVersion(stored.version, model, vocabs, meta)


def _checked_config(meta: dict[str, Any], version: int, vocabs: Vocabs) -> ModelSettings:
    """The model settings a version's metadata records, validated before anything is built."""

    def damaged(what: str) -> RecoError:
        return RecoError(f"model version {version} is damaged or was tampered with: {what}")

    config = meta.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise damaged("metadata has no config.model")
    known = {f.name for f in dataclasses.fields(ModelSettings)}
    values = {k: v for k, v in config["model"].items() if k in known}
    values["kind"] = meta.get("kind")
    for name, (low, high) in INT_LIMITS.items():
        value = values.get(name, low)
        if type(value) is not int or not low <= value <= high:
            raise damaged(f"model.{name} must be an integer from {low} to {high}, got {value!r}")
    dropout = values.get("dropout", 0.0)
    if type(dropout) not in (int, float) or not 0.0 <= dropout < 1.0:
        raise damaged(f"model.dropout must be a number from 0 to 1, got {dropout!r}")
    for name, allowed in CHOICES.items():
        if name in values and values[name] not in allowed:
            raise damaged(f"{name} must be one of {', '.join(allowed)}, got {values[name]!r}")
    for name, vocab in (("n_users", vocabs.users), ("n_items", vocabs.items)):
        if name in meta and meta[name] != len(vocab):
            raise damaged(f"{name} is {meta[name]!r} but its vocabulary holds {len(vocab)} ids")
    return ModelSettings(**values)


def _check_shapes(kind: str, cfg: ModelSettings, vocabs: Vocabs, stored) -> None:
    """The tensors the metadata describes (built on torch's meta device: no memory) against those the
    weights file's own header holds."""
    import torch

    with torch.device("meta"):
        expected = build_model(kind, len(vocabs.users), len(vocabs.items), cfg).state_dict()
    for name, tensor in expected.items():
        held = stored.tensors.get(name)
        if held is None or tuple(held.shape) != tuple(tensor.shape):
            shape = None if held is None else tuple(held.shape)
            raise RecoError(
                f"model version {stored.version} does not fit its metadata: {name} has shape {shape} in "
                f"the weights file, the metadata says {tuple(tensor.shape)}"
            )


def publish_version(
    registry: ModelRegistry, model: Recommender, vocabs: Vocabs, metadata: dict[str, Any], parent: int | None
) -> int:
    """Publish a model and its vocabularies as the next version; returns its number."""
    sizes = {"kind": model.kind, "n_users": model.n_users, "n_items": model.n_items}
    tables = {"users": vocabs.users.to_arrow(), "items": vocabs.items.to_arrow()}
    return registry.publish(model.state_dict(), tables, {**metadata, **sizes}, parent)
