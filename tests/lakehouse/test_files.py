"""Atomic writes: the target is the old file or the new one whole, and no temporary file is left."""

from __future__ import annotations

import pytest

from lakehouse.files import atomic_file, write_text_atomic


def test_text_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "pointer"
    write_text_atomic(target, "one")
    write_text_atomic(target, "två")
    assert target.read_text(encoding="utf-8") == "två"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pointer"]


def test_bytes_through_the_context_manager(tmp_path):
    target = tmp_path / "blob.bin"
    with atomic_file(target) as out:
        out.write(b"\x00\x01")
        out.write(b"\x02")
    assert target.read_bytes() == b"\x00\x01\x02"


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "state.npz"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="midway"), atomic_file(target) as out:
        out.write(b"half")
        raise RuntimeError("midway")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.npz"]


def test_the_temporary_is_hidden_beside_the_target_while_writing(tmp_path):
    target = tmp_path / "a.jsonl"
    with atomic_file(target, "w") as out:
        out.write("{}\n")
        names = [p.name for p in tmp_path.iterdir()]
        assert len(names) == 1 and names[0].startswith(".a.jsonl.") and names[0].endswith(".tmp")
        assert not target.exists()
    assert target.read_text() == "{}\n"
