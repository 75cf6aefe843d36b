"""The model registry: atomic versions, safe loading, clear errors on damage, rollback."""

from __future__ import annotations

import json

import pytest
import torch
from planted import interactions

from lakehouse.errors import RecoError
from lakehouse.registry import METADATA, POINTER, WEIGHTS, ModelRegistry, version_name
from recocli.config import Settings
from recocli.models.store import load_version, model_config, publish_version
from recocli.training.fit import fine_tune, fit_full


@pytest.fixture(scope="module")
def trained():
    settings = Settings()
    settings.model.sasrec.dim, settings.model.sasrec.max_len, settings.model.sasrec.blocks = 16, 10, 1
    settings.train.sasrec.epochs, settings.train.min_epoch_steps = 1, 2
    model, vocabs, metrics = fit_full("sasrec", interactions(1500, seed=1), settings, progress=False)
    return settings, model, vocabs, metrics


def meta(cursor: int) -> dict:
    return {"mode": "test", "cursor": {"bronze/events": cursor}, "config": {"model": {"dim": 16}}}


def test_publish_then_load_gives_the_same_model(tmp_path, trained):
    _, model, vocabs, _ = trained
    registry = ModelRegistry(tmp_path)
    assert registry.latest() is None and registry.versions() == []
    with pytest.raises(RecoError, match="no model"):
        load_version(registry)
    m = {**meta(4), "config": {"model": model_config(model)}}
    assert publish_version(registry, model, vocabs, m, parent=None) == 1
    loaded = load_version(registry)
    assert (loaded.version, loaded.cursor) == (1, {"bronze/events": 4})
    assert loaded.vocabs == vocabs
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], tensor), name
    users = torch.arange(model.n_users)
    assert torch.equal(loaded.model.score(user_rows=users), model.score(user_rows=users))
    saved = registry.metadata(1)
    assert saved["kind"] == "sasrec" and saved["parent"] is None and saved["n_items"] == len(vocabs.items)
    assert set(saved["files"]) == {WEIGHTS, "users.arrow", "items.arrow"}
    # safetensors: an 8-byte header length and JSON, never a pickle.
    raw = (tmp_path / "models" / version_name(1) / WEIGHTS).read_bytes()
    assert raw[8:9] == b"{" and not raw.startswith(b"\x80")


def test_versions_latest_and_rollback(tmp_path, trained):
    _, model, vocabs, _ = trained
    registry = ModelRegistry(tmp_path)
    m = {"config": {"model": model_config(model)}}
    for n in range(3):
        assert publish_version(registry, model, vocabs, {**m, "cursor": {"t": n}}, parent=n or None) == n + 1
    assert registry.versions() == [1, 2, 3] and registry.latest() == 3
    registry.rollback(1)
    assert registry.latest() == 1 and registry.versions() == [1, 2, 3]
    assert load_version(registry).cursor == {"t": 0}
    # The next version numbers on from the highest ever published, never reusing one.
    assert publish_version(registry, model, vocabs, {**m, "cursor": {"t": 9}}, parent=1) == 4
    assert registry.metadata(4)["parent"] == 1
    with pytest.raises(RecoError, match=r"no model version 7 .*versions: 1, 2, 3, 4"):
        registry.rollback(7)


def test_an_unfinished_publish_is_invisible_and_cleaned_up(tmp_path, trained):
    _, model, vocabs, _ = trained
    registry = ModelRegistry(tmp_path)
    m = {"config": {"model": model_config(model)}}
    publish_version(registry, model, vocabs, {**m, "cursor": {"t": 1}}, parent=None)
    root = tmp_path / "models"
    # Killed while writing the temp folder, and killed between the rename and the pointer.
    (root / ".tmp-v000002-123-abc").mkdir()
    (root / ".tmp-v000002-123-abc" / WEIGHTS).write_bytes(b"half")
    orphan = root / version_name(2)
    orphan.mkdir()
    (orphan / METADATA).write_text(json.dumps({"version": 2, "cursor": {"t": 99}}))
    assert registry.versions() == [1] and registry.latest() == 1
    assert publish_version(registry, model, vocabs, {**m, "cursor": {"t": 2}}, parent=1) == 2
    assert registry.metadata(2)["cursor"] == {"t": 2}
    assert sorted(p.name for p in root.iterdir()) == [POINTER, version_name(1), version_name(2)]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: _flip_byte(d / WEIGHTS), "tampered"),
        (lambda d: (d / WEIGHTS).write_bytes((d / WEIGHTS).read_bytes()[:100]), "tampered"),
        (lambda d: _flip_byte(d / "items.arrow"), "tampered"),
        (lambda d: (d / "users.arrow").unlink(), "users.arrow is missing"),
        # the pointer holds metadata.json's checksum: any change to it is tampering
        (lambda d: (d / METADATA).write_text("{not json"), r"metadata\.json does not match its checksum"),
        (lambda d: (d / METADATA).write_text(json.dumps({"version": 1, "files": {}})), "does not match"),
    ],
)
def test_damaged_or_tampered_versions_are_refused_with_a_clear_error(tmp_path, trained, damage, message):
    _, model, vocabs, _ = trained
    registry = ModelRegistry(tmp_path)
    publish_version(
        registry, model, vocabs, {"config": {"model": model_config(model)}, "cursor": {}}, parent=None
    )
    damage(tmp_path / "models" / version_name(1))
    with pytest.raises(RecoError, match=message):
        load_version(registry, 1)


def test_a_forged_checksum_still_cannot_smuggle_a_mismatched_model(tmp_path, trained):
    """Weights replaced along with their checksum: safetensors parsing and the strict state-dict
    check still refuse it (and nothing is ever unpickled)."""
    _, model, vocabs, _ = trained
    registry = ModelRegistry(tmp_path)
    publish_version(
        registry, model, vocabs, {"config": {"model": model_config(model)}, "cursor": {}}, parent=None
    )
    folder = tmp_path / "models" / version_name(1)
    from safetensors.torch import save_file

    save_file({"evil": torch.zeros(3)}, folder / WEIGHTS)
    data = json.loads((folder / METADATA).read_text())
    import hashlib

    data["files"][WEIGHTS] = hashlib.sha256((folder / WEIGHTS).read_bytes()).hexdigest()
    (folder / METADATA).write_text(json.dumps(data))
    # ... and the pointer forged too (as written before it held metadata checksums)
    (tmp_path / "models" / POINTER).write_text(json.dumps({"version": 1, "published": 1}))
    with pytest.raises(RecoError, match="does not fit its metadata"):
        load_version(registry, 1)


def test_a_loaded_version_fine_tunes_and_publishes_its_child(tmp_path, trained):
    settings, model, vocabs, _ = trained
    registry = ModelRegistry(tmp_path)
    publish_version(
        registry, model, vocabs, {"config": {"model": model_config(model)}, "cursor": {}}, parent=None
    )
    loaded = load_version(registry)
    fine_tune(loaded.model, loaded.vocabs, interactions(300, seed=8), None, settings)
    assert publish_version(registry, loaded.model, loaded.vocabs, loaded.metadata, parent=1) == 2
    assert (registry.metadata(2)["version"], registry.metadata(2)["parent"]) == (2, 1)
    assert load_version(ModelRegistry(tmp_path), 2).vocabs == loaded.vocabs


def _flip_byte(path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
