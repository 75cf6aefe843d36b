"""`reco recommend --export`: the target is checked before anything is scored or committed (issue 23)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import run_reco

from lakehouse.errors import RecoError
from recocli.recommend.export import check_export_target


def test_good_targets_and_their_formats(tmp_path):
    assert check_export_target(tmp_path / "new" / "deeper" / "a.csv", None, force=False) == "csv"
    (tmp_path / "old.jsonl").write_text("x\n")
    assert check_export_target(tmp_path / "old.jsonl", None, force=True) == "jsonl"
    assert check_export_target(tmp_path / "a.out", "parquet", force=False) == "parquet"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.jsonl"]  # nothing created


@pytest.mark.parametrize(
    ("name", "fmt", "message"),
    [
        ("folder", None, "is a folder: name a file to write"),
        ("old.jsonl", None, "already exists: pass --force"),
        ("a.out", None, "pass --format parquet, csv or jsonl"),
        ("a.csv", "parq", "--format parq is not one of parquet, csv, jsonl"),
        ("old.jsonl/x.csv", None, "old.jsonl is a file, not a folder"),
    ],
)
def test_bad_targets_are_one_line(tmp_path, name, fmt, message):
    (tmp_path / "folder").mkdir()
    (tmp_path / "old.jsonl").write_text("x\n")
    with pytest.raises(RecoError, match=message):
        check_export_target(tmp_path / name, fmt, force=False)


def test_an_unwritable_place_is_refused():
    with pytest.raises(RecoError, match="cannot write"):
        check_export_target(Path("/proc/reco-export.csv"), None, force=False)


def test_the_cli_refuses_before_scoring_and_commits_nothing(tmp_path):
    warehouse = tmp_path / "warehouse"
    (tmp_path / "folder").mkdir()
    done = run_reco(
        "recommend", "-w", str(warehouse), "--export", str(tmp_path / "folder"), "--format", "csv"
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().count("\n") == 0 and "is a folder" in done.stderr
    assert not warehouse.exists()
    assert [p.name for p in (tmp_path / "folder").iterdir()] == []
