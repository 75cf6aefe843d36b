"""`reco data fetch` against a real HTTP server on 127.0.0.1 serving a zip built here."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import socket
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from helpers import run_reco
from movielens_fixtures import write_100k

from lakehouse.errors import RecoError
from recocli.data import movielens
from recocli.data.fetch import ARCHIVES, DownloadError, fetch


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def serving(folder):
    """An HTTP server for `folder` on a free port of 127.0.0.1, and the requests it saw."""
    seen: list[str] = []

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            super().do_GET()

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def www(tmp_path):
    """A folder holding ml-100k.zip (one top folder, as GroupLens ships it) and its SHA-256."""
    source = write_100k(tmp_path / "src" / "ml-100k")
    root = tmp_path / "www"
    root.mkdir()
    with zipfile.ZipFile(root / "ml-100k.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ml-100k/", "")
        for path in sorted(source.iterdir()):
            zf.write(path, f"ml-100k/{path.name}")
    return root, hashlib.sha256((root / "ml-100k.zip").read_bytes()).hexdigest()


def test_good_checksum_unpacks_an_importable_folder(tmp_path, www):
    root, digest = www
    progress = []
    with serving(root) as (url, seen):
        result = fetch(
            "ml-100k", tmp_path / "datasets", url, sha256=digest, on_bytes=progress.append,
            on_start=lambda source, size: progress.append(("start", source, size)),
        )  # fmt: skip
    size = (root / "ml-100k.zip").stat().st_size
    assert seen == ["/ml-100k.zip"]
    assert progress[0] == ("start", f"{url}/ml-100k.zip", size) and sum(progress[1:]) == size
    assert (result.sha256, result.size, result.checked_against, result.downloaded) == (
        digest,
        size,
        "--sha256",
        True,
    )
    assert result.folder == tmp_path / "datasets" / "ml-100k"
    assert sorted(p.name for p in (tmp_path / "datasets").iterdir()) == ["ml-100k"]  # no temp left
    assert movielens.read_ratings(movielens.detect(result.folder)).num_rows == 6

    with serving(root) as (url, seen):  # already there: nothing is downloaded
        again = fetch("ml-100k", tmp_path / "datasets", url, sha256=digest)
    assert (again.downloaded, seen) == (False, [])


def test_checksum_mismatch_is_refused_and_leaves_nothing(tmp_path, www):
    root, digest = www
    with serving(root) as (url, _), pytest.raises(DownloadError) as caught:
        fetch("ml-100k", tmp_path / "datasets", url)  # the pinned GroupLens checksum
    message = str(caught.value)
    assert f"expected sha256 {ARCHIVES['ml-100k'].sha256}, got {digest}" in message
    assert caught.value.exit_code == 1
    assert not (tmp_path / "datasets").exists()  # the folder it made for the download is gone too


def test_server_down_and_missing_file_are_clear_errors(tmp_path, www):
    root, _ = www
    with pytest.raises(
        DownloadError, match=r"could not download http://127\.0\.0\.1:\d+/ml-1m\.zip: .*refused"
    ):
        fetch("ml-1m", tmp_path / "d", f"http://127.0.0.1:{free_port()}")
    with serving(root) as (url, _), pytest.raises(DownloadError, match="HTTP 404"):
        fetch("ml-1m", tmp_path / "d", url)
    assert not (tmp_path / "d").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(RecoError, match="file is a file, not a folder"):
        fetch("ml-1m", tmp_path / "file", "http://127.0.0.1:1")
    with pytest.raises(RecoError, match="unknown dataset 'ml-2m'"):
        fetch("ml-2m", tmp_path / "d", "http://127.0.0.1:1")
    with pytest.raises(RecoError, match="64 hex digits"):
        fetch("ml-1m", tmp_path / "d", "http://127.0.0.1:1", sha256="abc")


def test_zip_with_paths_outside_the_folder_is_refused(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    with zipfile.ZipFile(root / "ml-100k.zip", "w") as zf:
        zf.writestr("../../evil.txt", "x")
    digest = hashlib.sha256((root / "ml-100k.zip").read_bytes()).hexdigest()
    with serving(root) as (url, _), pytest.raises(DownloadError, match="unsafe path"):
        fetch("ml-100k", tmp_path / "datasets", url, sha256=digest)
    assert not (tmp_path / "evil.txt").exists()


def test_cli_fetch_then_offline(tmp_path, www):
    root, digest = www
    with serving(root) as (url, _):
        result = run_reco(
            "data", "fetch", "ml-100k", "--dir", str(tmp_path / "ds"), "--url", url, "--sha256", digest,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"sha256 {digest} ok (--sha256)" in result.stdout
    assert (tmp_path / "ds" / "ml-100k" / "u.data").is_file()

    down = run_reco(
        "data", "fetch", "ml-1m", "--dir", str(tmp_path / "ds"), "--url", f"http://127.0.0.1:{free_port()}"
    )
    assert down.returncode == 1
    assert down.stderr.startswith("error: could not download") and "Traceback" not in down.stderr
    assert len(down.stderr.strip().splitlines()) == 1

    unknown = run_reco("data", "fetch", "ml-2m")
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
