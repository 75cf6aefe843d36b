"""`reco report --chart`: checked before the warehouse is read, written exactly where it is named."""

from __future__ import annotations

from helpers import run_reco

from recocli.recommend.report import plot_ctr


def test_a_folder_or_a_file_in_the_way_is_one_line_and_creates_nothing(tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("x")
    warehouse = str(tmp_path / "warehouse")
    for chart, message in [
        (tmp_path / "folder", "is a folder: name a file to write"),
        (tmp_path / "file" / "ctr.png", "file is a file, not a folder"),
    ]:
        done = run_reco("report", "-w", warehouse, "--chart", str(chart))
        assert done.returncode == 2, done.stderr
        assert message in done.stderr and done.stderr.strip().count("\n") == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder"]
    assert list((tmp_path / "folder").iterdir()) == []
    # A mistyped landing would silently leave out the lists `reco serve` recorded there.
    typo_landing, chart = str(tmp_path / "landnig"), str(tmp_path / "ctr.png")
    typo = run_reco("report", "-w", warehouse, "--landing", typo_landing, "--chart", chart)
    assert typo.returncode == 2 and typo.stderr.startswith("error: no landing folder at"), typo.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder"]


def test_the_chart_is_a_png_at_the_named_path_whatever_its_suffix(tmp_path):
    rows = [
        {"variant": "v1", "day": "2026-12-01", "ctr": 0.1},
        {"variant": "v1", "day": "2026-12-02", "ctr": 0.2},
        {"variant": "popular", "day": "2026-12-02", "ctr": None},
    ]
    path = plot_ctr(rows, tmp_path / "charts" / "ctr")
    assert path == tmp_path / "charts" / "ctr"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in (tmp_path / "charts").iterdir()] == ["ctr"]  # no ctr.png, no temp file
