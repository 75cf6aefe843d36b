"""The `reco` command line as a user meets it: real processes, exit codes, messages."""

from __future__ import annotations

import json
import subprocess
import sys

from helpers import event, run_reco

from lakehouse.landing import write_landing_file
from recocli.config import load_settings


def test_help_explains_every_command():
    top = run_reco("--help")
    assert top.returncode == 0
    for command in ("ingest", "status", "demo"):
        assert command in top.stdout
        sub = run_reco(command, "--help")
        assert sub.returncode == 0 and "--help" in sub.stdout
    ingest_help = run_reco("ingest", "--help").stdout
    for flag in (
        "--warehouse",
        "--config",
        "--landing",
        "--once",
        "--interval",
        "--max-files-per-batch",
        "--json",
        "--query-name",
        "--accelerator",
    ):
        assert flag in ingest_help


def test_help_keeps_its_placeholders_and_flags_show_no_value_type():
    wide = {"COLUMNS": "400"}
    assert "[default: WAREHOUSE/_checkpoints/QUERY_NAME]" in run_reco("ingest", "--help", env=wide).stdout
    demo_help = run_reco("demo", "--help", env=wide).stdout
    assert "DIR/report/report.md" in demo_help and "--warehouse" in demo_help
    for command in ("ingest", "train", "demo", "status", "maintain"):
        assert "<bool>" not in run_reco(command, "--help").stdout, command


def test_the_cli_loads_on_a_typer_without_the_flag_type_hook():
    """Typers before 0.29 have no `display_type_rich` (a GPU box's image had one) and show no type
    for flags anyway: the CLI loads there, without patching what is not there."""
    code = (
        "import typer.core as core\n"
        "for cls in core.TyperOption.__mro__:\n"
        "    if 'display_type_rich' in vars(cls):\n"
        "        delattr(cls, 'display_type_rich')\n"
        "import recocli.cli\n"
        "assert not hasattr(core.TyperOption, 'display_type_rich')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_durations_read_as_durations():
    from lakehouse.settings import format_duration

    assert [format_duration(s) for s in (0.25, 12.34, 245, 12_000, 921_506_228.6)] == [
        "250ms",
        "12.3s",
        "4m 05s",
        "3h 20m",
        "10665d 13h",
    ]


def test_user_mistakes_exit_2_with_one_line_and_no_traceback(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[ingest]\nintervall = '1s'\n")
    cases = [
        run_reco("status", "--config", str(bad)),
        run_reco("status", "--config", str(tmp_path / "missing.toml")),
        run_reco("ingest", "--once", "-w", str(tmp_path / "w"), "--interval", "soon"),
    ]
    for done in cases:
        assert done.returncode == 2, done.stderr
        assert "error:" in done.stderr and "Traceback" not in done.stderr
    assert "unknown setting 'ingest.intervall'" in cases[0].stderr
    assert "'ingest.interval' from command line must be a duration" in cases[2].stderr
    assert run_reco("ingest", "--max-files-per-batch", "0").returncode == 2


def test_a_place_that_cannot_be_written_stops_a_command_before_it_creates_anything(tmp_path):
    """A file where the landing folder or the warehouse goes: one line, exit 2, nothing made."""
    file = tmp_path / "file"
    file.write_text("x")
    movielens = tmp_path / "ml"
    movielens.mkdir()
    (movielens / "u.data").write_text("")
    (movielens / "u.item").write_text("")
    wh, landing, sim = (str(tmp_path / n) for n in ("wh", "landing", "sim"))
    for args, message in [
        (("init", "-w", wh, "--landing", str(file)), "landing folder"),
        (("init", "-w", f"{file}/wh", "--landing", landing), "is a file, not a folder"),
        (("simulate", "--landing", str(file), "--state", sim), "landing folder"),
        (("replay", str(movielens), "-w", wh, "--landing", str(file)), "landing folder"),
        (
            (
                "data",
                "import",
                "movielens",
                str(movielens),
                "-w",
                wh,
                "--to",
                "landing",
                "--landing",
                str(file),
            ),
            "landing",
        ),
        (("data", "import", "movielens", str(movielens), "-w", f"{file}/wh"), "is a file, not a folder"),
    ]:
        done = run_reco(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr and done.stderr.strip().count("\n") == 0, (args, done.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "ml"]


def test_the_demo_checks_its_inputs_before_it_creates_anything(tmp_path):
    """A bad seed, a file where a folder goes or a missing --data: one line, exit 2, no folder."""
    (tmp_path / "file").write_text("x")
    demo = str(tmp_path / "demo")
    for args, message in [
        (("--dir", demo, "--seed", "-1"), "simulate.seed must be between 0 and 4294967295, got -1"),
        (("--dir", str(tmp_path / "file")), "--dir " + str(tmp_path / "file") + " is a file, not a folder"),
        (("--dir", demo, "-w", str(tmp_path / "file")), "is a file, not a folder"),
        (("--dir", demo, "--data", str(tmp_path / "none")), "not a folder"),
    ]:
        done = run_reco("demo", *args)
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr and "Traceback" not in done.stderr, (args, done.stderr)
        assert done.stderr.strip().count("\n") == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_status_lists_tables_and_files_not_yet_ingested(spark, tmp_path):
    from spark_jobs.ingest import run_ingest

    warehouse, landing = tmp_path / "warehouse", tmp_path / "landing"
    write_landing_file(landing, "events", "a.jsonl", [event(n) for n in range(12)] + ["broken"])
    settings = load_settings(env={}, overrides={"warehouse": str(warehouse), "ingest.landing": str(landing)})
    run_ingest(settings, once=True)
    write_landing_file(landing, "events", "later.jsonl", [event(99)])
    write_landing_file(landing, "feedback", "later.jsonl", ["{}"])

    done = run_reco("status", "-w", str(warehouse), "--landing", str(landing), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["tables"]["bronze/events"]["rows"] == 12
    assert report["tables"]["bronze/quarantine"]["rows"] == 1
    assert report["tables"]["bronze/feedback"]["rows"] == 0
    assert report["tables"]["_ops/ingest_metrics"]["rows"] == 1
    assert report["tables"]["bronze/events"]["version"] == 1
    assert sorted(p.split("landing/")[1] for p in report["pending_files"]) == [
        "events/later.jsonl",
        "feedback/later.jsonl",
    ]
    table_view = run_reco("status", "-w", str(warehouse), "--landing", str(landing))
    assert "bronze/events" in table_view.stdout and "2 file(s) not yet ingested" in table_view.stdout
    typo = run_reco("status", "-w", str(warehouse), "--landing", str(tmp_path / "landnig"))
    assert typo.returncode == 2 and typo.stderr.startswith("error: no landing folder at"), "not '0 files'"
    default = run_reco("status", "-w", str(warehouse), cwd=tmp_path / "warehouse")  # no ./landing there
    assert default.returncode == 0 and "landing ./landing: no such folder" in default.stdout


def test_demo_at_a_small_size_passes(tmp_path):
    args = (
        "demo",
        "--dir",
        str(tmp_path / "demo"),
        "--rounds",
        "4",
        "--events",
        "1500",
        "--users",
        "150",
        "--items",
        "100",
    )
    tables = tmp_path / "tables"
    done = run_reco(*args, "--warehouse", str(tables), env={"RECO_TRAIN_SASREC_EPOCHS": "8"}, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "demo OK" in done.stdout
    assert f"reco status -w {tables}" in done.stdout, "the demo says which warehouse comes next"
    assert run_reco("status", "-w", str(tables)).returncode == 0
    result = json.loads((tmp_path / "demo" / "report" / "demo.json").read_text())
    assert [r["round"] for r in result["rounds"]] == [0, 1, 2, 3]
    assert [r["model_version"] for r in result["rounds"]] == [1, 2, 3, 4]
    assert result["verdict"]["ctr_model"] > result["verdict"]["ctr_holdout"]
    assert all(r["feedback"] > 0 for r in result["rounds"][1:])
    for name in ("report.md", "ctr.png", "freshness.png"):
        assert (tmp_path / "demo" / "report" / name).stat().st_size > 0
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "precious.txt").write_text("keep")
    refused = run_reco("demo", "--dir", str(tmp_path / "mine"))
    assert refused.returncode == 2 and (tmp_path / "mine" / "precious.txt").exists()
    taken = run_reco("demo", "--dir", str(tmp_path / "other"), "--warehouse", str(tmp_path / "mine"))
    assert taken.returncode == 2 and "not empty" in taken.stderr and not (tmp_path / "other").exists()
