"""A tampered or damaged model version is refused in one line, before anything is allocated (issue 23)."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from helpers import run_reco

from lakehouse.errors import RecoError
from lakehouse.registry import METADATA, POINTER, WEIGHTS, ModelRegistry, version_name
from recocli.config import MFSettings
from recocli.models import build_model
from recocli.models.store import load_version, model_config, publish_version
from recocli.models.vocab import Vocabs, Vocabulary


@pytest.fixture
def published(tmp_path):
    model = build_model("mf", 5, 7, MFSettings(dim=8))
    vocabs = Vocabs(Vocabulary([f"u{n}" for n in range(5)]), Vocabulary([f"i{n}" for n in range(7)]))
    registry = ModelRegistry(tmp_path)
    publish_version(
        registry, model, vocabs, {"config": {"model": model_config(model)}, "cursor": {}}, parent=None
    )
    return registry, tmp_path / "models" / version_name(1)


def _old_pointer(registry: ModelRegistry) -> None:
    """A pointer as written before it carried the metadata's checksum (still read)."""
    (registry.root / POINTER).write_text(json.dumps({"version": 1, "published": 1}))


def _edit(folder, change) -> None:
    data = json.loads((folder / METADATA).read_text())
    (folder / METADATA).write_text(json.dumps(change(data)))


def _model(data: dict, **fields) -> dict:
    data["config"]["model"]["mf"].update(fields)
    return data


def test_the_pointer_holds_the_metadata_checksum(published):
    registry, folder = published
    _edit(folder, lambda d: _model(d, dim=9))
    with pytest.raises(RecoError, match=r"metadata\.json does not match its checksum"):
        load_version(registry)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: _model(d, dim=-3), "model.mf.dim must be an integer from 1 to"),
        (lambda d: _model(d, dim="64"), "model.mf.dim must be an integer"),
        (lambda d: _model(d, dim=20000), "model.mf.dim must be an integer from 1 to"),
        (lambda d: _model(d, max_len=1e9), "model.mf.max_len must be an integer"),
        (lambda d: {k: v for k, v in d.items() if k != "config"}, "metadata has no config.model"),
        (lambda d: [d], r"metadata\.json is not a JSON object"),
        (lambda d: {**d, "kind": "gpt"}, "kind must be one of"),
        (lambda d: {**d, "n_items": 10**12}, "n_items"),
    ],
)
def test_metadata_is_validated_before_anything_is_allocated(published, change, message):
    registry, folder = published
    _old_pointer(registry)
    _edit(folder, change)
    with pytest.raises(RecoError, match=message):
        load_version(registry)


def test_linked_files_are_refused_without_reading_them(published):
    registry, folder = published
    (folder / WEIGHTS).unlink()
    os.symlink("/dev/zero", folder / WEIGHTS)
    signal.alarm(20)  # reading /dev/zero would never end
    try:
        with pytest.raises(RecoError, match="is a link or not a regular file"):
            load_version(registry)
        done = run_reco("models", "show", "1", "-w", str(folder.parents[1]), timeout=60)
    finally:
        signal.alarm(0)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr


def test_a_header_that_disagrees_with_the_metadata_is_refused(published):
    registry, folder = published
    _old_pointer(registry)
    _edit(folder, lambda d: _model(d, dim=16))
    started = time.monotonic()
    with pytest.raises(RecoError, match="shape"):
        load_version(registry)
    assert time.monotonic() - started < 5
