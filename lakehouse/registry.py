"""The model registry: the only writer of models and of the training cursor.

    <warehouse>/models/
      v000001/   weights.safetensors   parameters + remembered histories (tensors only, no pickle)
                 users.arrow, items.arrow   vocabularies (Arrow IPC: raw id, row, count)
                 metadata.json   version, parent, kind, config, cursor (Delta version read up to,
                                 per table), rows, metrics, device, seconds, created_at, sha256 of
                                 every file
                 training_log/   metrics.csv: every epoch's losses and metrics (Lightning's CSV log;
                                 TensorBoard's files under tensorboard/ when it is installed)
      latest     {"version": 3, "published": 5, "metadata_sha256": {"1": …}}: the served version, the
                 highest ever published, and each version's metadata.json checksum (a pointer
                 written without them is still read; its versions' metadata is then unchecked)
      .tmp-*     a publish that did not finish (ignored; removed by the next publish)

Publishing is one atomic step: write a temp folder, rename it to its version, then replace
`latest` (itself written to a temp file and renamed). A process killed at any point leaves the
previous version served and its cursor in place. A version folder above `published` is a publish
killed between its rename and the pointer: never served, it is removed by the next publish.
Callers hold the warehouse's train lock around publish and rollback (one writer).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import stat
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from lakehouse.catalog import Warehouse
from lakehouse.errors import RecoError
from lakehouse.files import fsync_path, write_text_atomic

if TYPE_CHECKING:
    import torch

WEIGHTS, USERS, ITEMS, METADATA, POINTER = (
    "weights.safetensors", "users.arrow", "items.arrow", "metadata.json", "latest",
)  # fmt: skip
TRAINING_LOG = "training_log"
CURVE = f"{TRAINING_LOG}/metrics.csv"
# The Arrow tables a version holds beside its tensors, by name, and their files.
TABLE_FILES = {"users": USERS, "items": ITEMS}
VERSION_DIR = re.compile(r"^v(\d{6,})$")
MAX_METADATA_BYTES = 1 << 20


def version_name(version: int) -> str:
    return f"v{version:06d}"


@dataclass
class StoredVersion:
    """A version as stored: its tensors (CPU), Arrow tables and metadata. Callers build models."""

    version: int
    tensors: dict[str, torch.Tensor]
    tables: dict[str, pa.Table]
    metadata: dict[str, Any]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_regular(path: Path, version: int) -> None:
    """A version's file must be a regular file: a link (to /dev/zero, say) is never followed."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        raise RecoError(f"model version {version} is incomplete: {path.name} is missing") from None
    if not stat.S_ISREG(mode):
        raise RecoError(f"model version {version}: {path} is a link or not a regular file: refused")


def _write_table(path: Path, table: pa.Table) -> None:
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def _read_table(path: Path) -> pa.Table:
    try:
        with pa.OSFile(str(path), "rb") as source:
            return pa.ipc.open_file(source).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise RecoError(f"cannot read {path}: {exc}") from None


class ModelRegistry:
    """Versions of the warehouse's model under <warehouse>/models."""

    def __init__(self, warehouse: Warehouse | str | Path) -> None:
        self.warehouse = warehouse if isinstance(warehouse, Warehouse) else Warehouse(warehouse)
        self.root = self.warehouse.models

    # ---- reading (no torch needed) ----

    def _pointer(self) -> dict[str, Any]:
        path = self.root / POINTER
        if not path.exists():
            return {}
        try:
            _check_regular(path, 0)
            data = json.loads(path.read_text())
            checksums = data.get("metadata_sha256", {})
            if not isinstance(checksums, dict):
                raise TypeError
            return {"version": int(data["version"]), "published": int(data["published"]), "sha": checksums}
        except (ValueError, KeyError, TypeError, AttributeError, RecoError, UnicodeDecodeError):
            raise RecoError(f"model pointer {path} is corrupted: fix or delete it") from None

    def _write_pointer(self, version: int, published: int, checksums: dict[str, str]) -> None:
        pointer = {"version": version, "published": published, "metadata_sha256": checksums}
        write_text_atomic(self.root / POINTER, json.dumps(pointer))

    def latest(self) -> int | None:
        """The version served and trained on next, or None when there is none."""
        return self._pointer().get("version")

    def published(self) -> int:
        return self._pointer().get("published", 0)

    def versions(self) -> list[int]:
        """Every published version still on disk, oldest first."""
        if not self.root.is_dir():
            return []
        top = self.published()
        found = []
        for entry in self.root.iterdir():
            match = VERSION_DIR.match(entry.name)
            if match and int(match.group(1)) <= top and (entry / METADATA).exists():
                found.append(int(match.group(1)))
        return sorted(found)

    def path(self, version: int) -> Path:
        return self.root / version_name(version)

    def metadata(self, version: int | None = None) -> dict[str, Any]:
        """A version's metadata.json: a regular file, of bounded size, matching the checksum the
        pointer records for it, holding a JSON object."""
        version = self._resolve(version)
        path = self.path(version) / METADATA
        if not path.exists() and not path.is_symlink():
            raise RecoError(f"model version {version} has no {METADATA} ({path})")
        _check_regular(path, version)
        if path.stat().st_size > MAX_METADATA_BYTES:
            raise RecoError(
                f"model version {version} is corrupted: {path} is over {MAX_METADATA_BYTES} bytes"
            )
        expected = self._pointer().get("sha", {}).get(str(version))
        if expected is not None and _sha256(path) != expected:
            raise RecoError(
                f"model version {version} is corrupted or was tampered with: {METADATA} does not match its "
                "checksum (roll back with `reco models rollback`, or retrain)"
            )
        try:
            meta = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError):
            raise RecoError(f"model version {version} is corrupted: {path} is not valid JSON") from None
        if not isinstance(meta, dict):
            raise RecoError(f"model version {version} is corrupted: {METADATA} is not a JSON object")
        return meta

    def _resolve(self, version: int | None) -> int:
        if version is None:
            latest = self.latest()
            if latest is None:
                raise RecoError(f"no model in {self.root}: train one with `reco train`")
            return latest
        if version not in self.versions():
            known = ", ".join(map(str, self.versions())) or "none"
            raise RecoError(f"no model version {version} in {self.root} (versions: {known})")
        return version

    def verify(self, version: int) -> dict[str, Any]:
        """The metadata, after checking every file against its recorded sha256."""
        meta = self.metadata(version)
        folder = self.path(version)
        files = meta.get("files")
        if not isinstance(files, dict) or not {WEIGHTS, USERS, ITEMS} <= set(files):
            raise RecoError(f"model version {version} is corrupted: {METADATA} lists no valid checksums")
        for name, expected in files.items():
            path = folder / name
            _check_regular(path, version)
            if _sha256(path) != expected:
                raise RecoError(
                    f"model version {version} is corrupted or was tampered with: {name} does not "
                    f"match its checksum (roll back with `reco models rollback`, or retrain)"
                )
        return meta

    def training_curve(self, version: int) -> list[dict[str, float]]:
        """One row per epoch of the version's training log (epoch, train_loss, val_hr10 …; Lightning
        writes a training and a validation row per epoch: merged); [] when it has none."""
        path = self.path(self._resolve(version)) / CURVE
        if not path.exists():
            return []
        epochs: dict[int, dict[str, float]] = {}
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                if not row.get("epoch"):
                    continue
                merged = epochs.setdefault(int(float(row["epoch"])), {})
                merged.update({k: float(v) for k, v in row.items() if v not in ("", None) and k != "step"})
        return [epochs[e] for e in sorted(epochs)]

    # ---- loading (safetensors and Arrow: nothing is unpickled) ----

    def read(self, version: int | None = None) -> StoredVersion:
        """A version (default: latest) onto the CPU, checksums verified first."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        version = self._resolve(version)
        meta = self.verify(version)
        folder = self.path(version)
        tables = {name: _read_table(folder / file) for name, file in TABLE_FILES.items()}
        try:
            tensors = load_file(folder / WEIGHTS, device="cpu")
        except (SafetensorError, OSError) as exc:
            raise RecoError(f"model version {version}: cannot read {WEIGHTS}: {exc}") from None
        return StoredVersion(version, tensors, tables, meta)

    # ---- writing ----

    def publish(
        self,
        tensors: dict[str, torch.Tensor],
        tables: dict[str, pa.Table],
        metadata: dict[str, Any],
        parent: int | None,
        training_log: Path | None = None,
    ) -> int:
        """Write a new version atomically and serve it; returns its number. `tables` are the
        vocabularies by TABLE_FILES name; `metadata` carries the kind and sizes the caller knows.
        `training_log`: a folder whose files become the version's training_log/ (checksummed too)."""
        from safetensors.torch import save_file

        self.root.mkdir(parents=True, exist_ok=True)
        self._clean()
        version = self.published() + 1
        tmp = self.root / f".tmp-{version_name(version)}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        state = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
        save_file(state, tmp / WEIGHTS, metadata={"kind": str(metadata.get("kind")), "version": str(version)})
        for name, file in TABLE_FILES.items():
            _write_table(tmp / file, tables[name])
        meta: dict[str, Any] = {"version": version, "parent": parent}
        meta.update({k: v for k, v in metadata.items() if k not in meta and k not in ("created_at", "files")})
        meta["created_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        logged = []
        if training_log is not None and training_log.is_dir():
            shutil.copytree(training_log, tmp / TRAINING_LOG)
            logged = [str(p.relative_to(tmp)) for p in sorted((tmp / TRAINING_LOG).rglob("*")) if p.is_file()]
        meta["files"] = {name: _sha256(tmp / name) for name in (WEIGHTS, USERS, ITEMS, *logged)}
        (tmp / METADATA).write_text(json.dumps(meta, indent=2, default=str))
        for name in (WEIGHTS, USERS, ITEMS, METADATA, *logged):
            fsync_path(tmp / name)
        fsync_path(tmp)
        os.rename(tmp, self.path(version))
        fsync_path(self.root)
        checksums = {**self._pointer().get("sha", {}), str(version): _sha256(self.path(version) / METADATA)}
        self._write_pointer(version, version, checksums)
        return version

    def rollback(self, version: int) -> None:
        """Serve `version` again; the next incremental run continues from its cursor."""
        self.verify(self._resolve(version))
        self._write_pointer(version, self.published(), self._pointer().get("sha", {}))

    def _clean(self) -> None:
        """Remove unfinished publishes: temp folders and versions the pointer never reached."""
        top = self.published()
        for entry in self.root.iterdir():
            match = VERSION_DIR.match(entry.name)
            stale_pointer = entry.name.startswith(f".{POINTER}.") and entry.name.endswith(".tmp")
            if entry.name.startswith(".tmp-") or stale_pointer or (match and int(match.group(1)) > top):
                shutil.rmtree(entry, ignore_errors=True)
