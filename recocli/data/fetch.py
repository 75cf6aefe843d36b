"""`reco data fetch`: download a GroupLens MovieLens zip, check its SHA-256, unpack it.

The pinned checksums are those of the archives files.grouplens.org serves, as recorded in
TensorFlow Datasets' url_checksums/movielens.txt and, independently, in several projects that
pin the same downloads. GroupLens may regenerate the "latest" datasets: when a pinned checksum
no longer matches, `--sha256` names the one you expect instead.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lakehouse.errors import RecoError
from lakehouse.files import check_writable_folder


@dataclass(frozen=True)
class Archive:
    name: str
    sha256: str
    size: int


ARCHIVES = {
    a.name: a
    for a in (
        Archive("ml-100k", "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229", 4_924_029),
        Archive("ml-1m", "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20", 5_917_549),
        Archive(
            "ml-latest-small", "696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436", 978_202
        ),
        Archive("ml-25m", "8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa", 261_978_986),
    )
}
CHUNK = 1 << 20
TIMEOUT_S = 30


class DownloadError(RecoError):
    """The network or the server failed us: not a usage mistake, so exit 1."""

    exit_code = 1


@dataclass
class FetchResult:
    name: str
    url: str
    folder: Path
    sha256: str
    size: int
    checked_against: str  # "pinned" (this module's table), "--sha256", or "" when nothing was fetched
    downloaded: bool  # False when the folder was already there

    def as_dict(self) -> dict:
        return {**self.__dict__, "folder": str(self.folder)}


def archive_url(name: str, base_url: str) -> str:
    """`base_url` is a folder holding <name>.zip, or the zip's own URL when it ends in .zip."""
    return base_url if base_url.endswith(".zip") else f"{base_url.rstrip('/')}/{name}.zip"


def fetch(
    name: str,
    dest: str | Path,
    base_url: str,
    sha256: str | None = None,
    force: bool = False,
    on_start: Callable[[str, int | None], None] | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> FetchResult:
    """Download `name` into <dest>/<name>/ unless it is there (or `force`); verify, then unpack."""
    if name not in ARCHIVES:
        raise RecoError(f"unknown dataset {name!r}: choose one of {', '.join(ARCHIVES)}")
    expected = (sha256 or ARCHIVES[name].sha256).lower().strip()
    if len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected):
        raise RecoError(f"--sha256 must be 64 hex digits, got {sha256!r}")
    source = archive_url(name, base_url)
    root = Path(dest).expanduser().resolve()
    folder = root / name
    if folder.is_dir() and any(folder.iterdir()) and not force:
        return FetchResult(name, source, folder, "", 0, checked_against="", downloaded=False)
    check_writable_folder(root, "data.dir (--dir)")
    made = [p for p in (root, *root.parents) if not p.exists()]
    root.mkdir(parents=True, exist_ok=True)
    try:
        return _download_and_unpack(name, source, folder, expected, sha256, on_start, on_bytes)
    except BaseException:
        for path in made:  # deepest first; a folder something else wrote into stays
            try:
                path.rmdir()
            except OSError:
                break
        raise


def _download_and_unpack(
    name: str,
    source: str,
    folder: Path,
    expected: str,
    sha256: str | None,
    on_start: Callable[[str, int | None], None] | None,
    on_bytes: Callable[[int], None] | None,
) -> FetchResult:
    """Download into a temporary folder beside `folder`, verify, unpack, then move into place."""
    with tempfile.TemporaryDirectory(prefix=f".{name}-", dir=folder.parent) as work:
        archive = Path(work) / f"{name}.zip"
        digest, size = _download(source, archive, on_start, on_bytes)
        if digest != expected:
            raise DownloadError(
                f"checksum mismatch for {source}: expected sha256 {expected}, got {digest} "
                f"({size} bytes); the download is corrupt or the file changed upstream "
                "(pass --sha256 with the value you trust)"
            )
        unpacked = Path(work) / "unpacked"
        _unzip(archive, unpacked)
        inner = unpacked / name
        if not inner.is_dir():  # archives hold one top folder named like the dataset
            tops = [p for p in unpacked.iterdir() if p.is_dir()]
            inner = tops[0] if len(tops) == 1 else unpacked
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(inner, folder)
    checked = "--sha256" if sha256 else "pinned"
    return FetchResult(name, source, folder, digest, size, checked_against=checked, downloaded=True)


def _download(
    url: str,
    target: Path,
    on_start: Callable[[str, int | None], None] | None,
    on_bytes: Callable[[int], None] | None,
) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, open(target, "wb") as out:
            length = response.headers.get("Content-Length")
            if on_start:
                on_start(url, int(length) if length and length.isdigit() else None)
            while chunk := response.read(CHUNK):
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
                if on_bytes:
                    on_bytes(len(chunk))
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"could not download {url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise DownloadError(
            f"could not download {url}: {exc.reason} (offline? set data.movielens_url or --url to a mirror)"
        ) from None
    except (TimeoutError, ConnectionError) as exc:
        raise DownloadError(f"could not download {url}: {exc or type(exc).__name__}") from None
    return digest.hexdigest(), size


def _unzip(archive: Path, target: Path) -> None:
    """Extract, refusing members that would land outside `target` (absolute or '..' paths)."""
    target.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.infolist():
                destination = (target / member.filename).resolve()
                if not destination.is_relative_to(target.resolve()):
                    raise DownloadError(f"{archive.name} holds an unsafe path: {member.filename!r}")
            zf.extractall(target)
    except zipfile.BadZipFile as exc:
        raise DownloadError(f"{archive.name} is not a valid zip file: {exc}") from None
