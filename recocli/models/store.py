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
from recocli.models import KINDS, build_model
from recocli.models.base import Recommender
from recocli.models.prior import RankerState
from recocli.models.vocab import Vocabs, Vocabulary

RANKER_PREFIX = "ranker."
# What a stored model's config may hold: far beyond any model we train, far below an allocation that
# would exhaust memory (a tampered dim = 20000 or max_len = 1e9 is refused before anything is built).
INT_LIMITS = {
    "dim": (1, 4096),
    "blocks": (1, 64),
    "heads": (1, 64),
    "max_len": (1, 100_000),
    "sampled_negatives": (0, 10_000_000),
    "negatives": (0, 100_000),
    "history": (0, 100_000),
}
MF_LOSSES = ("bce", "softmax")


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
    cfg = _checked_config(meta, stored.version, vocabs)
    _check_shapes(meta["kind"], cfg, vocabs, stored)
    with torch.device("meta"):  # no random init of tables that the stored tensors replace
        model = build_model(meta["kind"], len(vocabs.users), len(vocabs.items), cfg)
    ranker_tensors = {k: v for k, v in stored.tensors.items() if k.startswith(RANKER_PREFIX)}
    try:
        model_tensors = {k: v for k, v in stored.tensors.items() if k not in ranker_tensors}
        model.load_state_dict(model_tensors, strict=True, assign=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise RecoError(f"model version {stored.version} does not fit its metadata: {first}") from None
    model.eval()
    ranker = _stored_ranker(ranker_tensors, meta, stored.version) if ranker_tensors else None
    return ModelVersion(stored.version, model, vocabs, meta, ranker)


def _stored_ranker(tensors: dict[str, torch.Tensor], meta: dict[str, Any], version: int) -> RankerState:
    """The ranker state stored with a version (its tensors and metadata's "ranker"), checked."""
    try:
        return RankerState.from_stored(tensors, meta["ranker"])
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError, StopIteration):
        raise RecoError(
            f"model version {version} is damaged or was tampered with: its ranker does not fit its metadata"
        ) from None


# Versions published before each kind had its own section recorded one flat [model] table, where mf's
# fields were prefixed and its defaults were those below.
_FLAT_MF_DEFAULTS = {"dim": 64, "loss": "bce", "negatives": 8, "history": 0, "max_len": 50}


def _recorded_values(kind: str, recorded: dict[str, Any]) -> dict[str, Any]:
    """The settings of `kind` in a version's config.model: {"kind": …, "<kind>": {…}}, or the flat
    table of older versions."""
    values = recorded.get(kind)
    if isinstance(values, dict):
        return dict(values)
    flat = {k.removeprefix("mf_"): v for k, v in recorded.items()} if kind == "mf" else recorded
    return {**(_FLAT_MF_DEFAULTS if kind == "mf" else {}), **flat}


def recorded_model_settings(kind: str, recorded: dict[str, Any]) -> SASRecSettings | MFSettings:
    """The settings a version's model was built with, from its metadata's config.model."""
    cls = MFSettings if kind == "mf" else SASRecSettings
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in _recorded_values(kind, recorded).items() if k in known})


def model_config(model: Recommender) -> dict[str, Any]:
    """What a version records as config.model: its kind and that kind's settings."""
    return {"kind": model.kind, model.kind: dataclasses.asdict(model.cfg)}


def _checked_config(meta: dict[str, Any], version: int, vocabs: Vocabs) -> SASRecSettings | MFSettings:
    """The model settings a version's metadata records, validated before anything is built."""

    def damaged(what: str) -> RecoError:
        return RecoError(f"model version {version} is damaged or was tampered with: {what}")

    config = meta.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise damaged("metadata has no config.model")
    kind = meta.get("kind")
    if kind not in KINDS:
        raise damaged(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    values = _recorded_values(kind, config["model"])
    for name, (low, high) in INT_LIMITS.items():
        value = values.get(name, low)
        if type(value) is not int or not low <= value <= high:
            raise damaged(f"model.{kind}.{name} must be an integer from {low} to {high}, got {value!r}")
    dropout = values.get("dropout", 0.0)
    if type(dropout) not in (int, float) or not 0.0 <= dropout < 1.0:
        raise damaged(f"model.{kind}.dropout must be a number from 0 to 1, got {dropout!r}")
    if values.get("loss", "bce") not in MF_LOSSES:
        raise damaged(f"model.mf.loss must be one of {', '.join(MF_LOSSES)}, got {values['loss']!r}")
    for name, vocab in (("n_users", vocabs.users), ("n_items", vocabs.items)):
        if name in meta and meta[name] != len(vocab):
            raise damaged(f"{name} is {meta[name]!r} but its vocabulary holds {len(vocab)} ids")
    return recorded_model_settings(kind, config["model"])


def _check_shapes(kind: str, cfg: SASRecSettings | MFSettings, vocabs: Vocabs, stored) -> None:
    """The tensors the metadata describes (built on torch's meta device: no memory) against those the
    weights file's own header holds."""
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
    registry: ModelRegistry,
    model: Recommender,
    vocabs: Vocabs,
    metadata: dict[str, Any],
    parent: int | None,
    ranker: RankerState | None = None,
    training_log: Path | None = None,
) -> int:
    """Publish a model, its vocabularies, its ranker's state (and its training log folder) as the next
    version; returns its number. The ranker's tensors go into the model's safetensors file, its choice
    into metadata."""
    sizes = {"kind": model.kind, "n_users": model.n_users, "n_items": model.n_items}
    tables = {"users": vocabs.users.to_arrow(), "items": vocabs.items.to_arrow()}
    tensors = dict(model.state_dict())
    if ranker is not None:
        tensors.update(ranker.tensors())
        metadata = {**metadata, "ranker": ranker.metadata()}
    return registry.publish(tensors, tables, {**metadata, **sizes}, parent, training_log)
