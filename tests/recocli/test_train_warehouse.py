"""`reco train` on a real warehouse: the cursor, the lock, SIGKILL, the CLI and `reco ingest --train`.

Real Delta tables, real processes, real Lightning fits (tiny models so the suite stays fast).
"""

from __future__ import annotations

import json
import random
import signal
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest
from helpers import Process, reco_cmd, run_reco
from planted import commit_events, events

from lakehouse import catalog, delta
from lakehouse.catalog import Warehouse
from lakehouse.landing import write_landing_file
from lakehouse.registry import ModelRegistry
from recocli.config import load_settings
from recocli.data.synthetic import generate_lines
from recocli.models.store import load_version
from recocli.training.incremental import WarehouseTrainer, train_lock

TINY = """
[model.sasrec]
dim = 16
max_len = 10
blocks = 1
[model.mf]
dim = 16
max_len = 10
[train]
min_epoch_steps = 3
[train.sasrec]
epochs = 2
[train.mf]
epochs = 2
"""


@pytest.fixture
def setup(tmp_path):
    """A warehouse folder, a tiny-model config file, and 900 generated events to commit."""
    conf = tmp_path / "tiny.toml"
    conf.write_text(TINY)
    (tmp_path / "warehouse").mkdir()
    return tmp_path / "warehouse", conf, events(900, seed=11)


def settings_for(warehouse: Path, conf: Path, **overrides):
    return load_settings(conf, env={}, overrides={"warehouse": str(warehouse), **overrides})


def consumed_ids(warehouse: Path, registry: ModelRegistry, version: int) -> list[str]:
    """The event ids in the Delta versions a model version says it consumed."""
    span = registry.metadata(version)["consumed"][catalog.EVENTS.name]
    if span is None:
        return []
    uri = Warehouse(warehouse).uri(catalog.EVENTS)
    return delta.read_changes(uri, span[0] - 1, span[1], ["event_id"])["event_id"].to_pylist()


def lineage(registry: ModelRegistry) -> list[int]:
    """The served version and its ancestors, oldest first."""
    chain, version = [], registry.latest()
    while version is not None:
        chain.append(version)
        version = registry.metadata(version)["parent"]
    return chain[::-1]


def assert_every_row_consumed_once(warehouse: Path) -> None:
    registry = ModelRegistry(warehouse)
    consumed: list[str] = []
    for version in lineage(registry):
        ids = consumed_ids(warehouse, registry, version)
        assert registry.metadata(version)["rows"][catalog.EVENTS.name] == len(ids)
        consumed += ids
    table = delta.read_table(Warehouse(warehouse).uri(catalog.EVENTS), columns=["event_id"])
    assert len(consumed) == len(set(consumed)), "a row was consumed twice"
    assert sorted(consumed) == sorted(table["event_id"].to_pylist()), "a row was skipped"


def test_full_then_incremental_then_nothing_new_through_the_cli(setup):
    warehouse, conf, data = setup
    w, c = ("-w", str(warehouse)), ("-c", str(conf))
    empty = run_reco("train", *w, *c)
    assert empty.returncode == 0 and "nothing to train on yet" in empty.stdout
    refused = run_reco("train", "--full", *w, *c)
    assert (
        refused.returncode == 2
        and "nothing to train on" in refused.stderr
        and "Traceback" not in refused.stderr
    )

    commit_events(warehouse, data.slice(0, 300), 0)
    commit_events(warehouse, data.slice(300, 300), 1)
    first = run_reco("train", *w, *c)
    assert first.returncode == 0, first.stderr
    assert "device: cpu" in first.stdout and "model v1 (full)" in first.stdout
    again = run_reco("train", *w, *c)
    assert again.returncode == 0 and "nothing new since v1" in again.stdout
    assert ModelRegistry(warehouse).versions() == [1]

    commit_events(warehouse, data.slice(600, 300), 2)
    second = run_reco("train", "--json", *w, *c)
    assert second.returncode == 0, second.stderr
    result = json.loads(second.stdout.strip().splitlines()[-1])
    assert (result["mode"], result["version"], result["parent"]) == ("incremental", 2, 1)
    assert result["rows"][catalog.EVENTS.name] == 300 and result["cursor"][catalog.EVENTS.name] == 3
    assert_every_row_consumed_once(warehouse)

    listed = json.loads(run_reco("models", "list", "--json", *w).stdout)
    assert [v["version"] for v in listed["versions"]] == [1, 2] and listed["latest"] == 2
    assert [v["mode"] for v in listed["versions"]] == ["full", "incremental"]
    table = run_reco("models", "list", *w)
    assert table.returncode == 0 and "*v2" in table.stdout
    shown = json.loads(run_reco("models", "show", "2", "--json", *w).stdout)
    assert shown["consumed"][catalog.EVENTS.name] == [3, 3] and shown["parent"] == 1
    assert shown["metrics"]["new_rows"] == 300 and shown["config"]["model"]["sasrec"]["dim"] == 16
    missing = run_reco("models", "show", "9", *w)
    assert missing.returncode == 2 and "no model version 9" in missing.stderr

    # Roll back: the next run continues from v1's cursor, re-reading what v2 had read.
    rolled = run_reco("models", "rollback", "1", *w)
    assert rolled.returncode == 0 and "latest is now v1" in rolled.stdout
    status = json.loads(run_reco("status", "--json", *w).stdout)
    assert status["model"]["version"] == 1
    assert status["model"]["cursor"][catalog.EVENTS.name]["versions_behind"] == 1
    trainer = WarehouseTrainer(settings_for(warehouse, conf))
    third = trainer.run()
    assert (third.version, third.parent) == (3, 1) and third.rows[catalog.EVENTS.name] == 300
    assert lineage(ModelRegistry(warehouse)) == [1, 3]
    assert_every_row_consumed_once(warehouse)


def test_too_little_to_learn_from_waits_for_more_without_a_traceback(setup):
    """One event per user: nothing for sasrec to learn yet. A scheduled `reco train` says so and
    exits 0, publishing nothing; `reco train --full` stops with one line (before: a traceback)."""
    warehouse, conf, data = setup
    first: dict[str, dict] = {}
    for row in data.to_pylist():
        first.setdefault(row["user_id"], row)
    commit_events(warehouse, pa.Table.from_pylist(list(first.values()), schema=data.schema), 0)
    w, c = ("-w", str(warehouse)), ("-c", str(conf))
    waits = run_reco("train", *w, *c)
    assert waits.returncode == 0, waits.stderr
    assert "too little to train sasrec on yet" in waits.stdout
    assert ModelRegistry(Warehouse(warehouse)).latest() is None
    refused = run_reco("train", "--full", *w, *c)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip() == "error: " + waits.stdout.strip().splitlines()[-1]


def test_an_incremental_version_records_its_parents_config_plus_what_changed(setup):
    """A cron `reco train` with default settings fine-tunes an mf model: the new version still says
    mf with the parent's settings, and names the fine-tune settings that differ from the parent's."""
    warehouse, conf, data = setup
    commit_events(warehouse, data.slice(0, 600), 0)
    full = settings_for(warehouse, conf, **{"model.kind": "mf", "model.mf.history": 3, "train.mf.epochs": 3})
    assert WarehouseTrainer(full).run().version == 1
    commit_events(warehouse, data.slice(600, 300), 1)
    cron = settings_for(warehouse, conf, **{"train.finetune_epochs": 1})
    assert cron.model.kind == "sasrec" and cron.train.mf.epochs == 2
    assert WarehouseTrainer(cron).run().version == 2
    registry = ModelRegistry(warehouse)
    parent, child = (registry.metadata(v)["config"] for v in (1, 2))
    assert child["model"] == parent["model"] == {"kind": "mf", "mf": {**child["model"]["mf"], "history": 3}}
    assert child["train"]["mf"] == parent["train"]["mf"] == {**parent["train"]["mf"], "epochs": 3}
    assert "sasrec" not in child["train"] and child["train"]["finetune_epochs"] == 1
    assert child["changed"] == ["train.finetune_epochs"]
    loaded = load_version(registry, 2)
    assert loaded.model.kind == "mf" and loaded.model.history_len == 3


def test_a_second_trainer_exits_at_once(setup):
    warehouse, conf, data = setup
    commit_events(warehouse, data.slice(0, 100), 0)
    with train_lock(Warehouse(warehouse)):
        busy = run_reco("train", "-w", str(warehouse), "-c", str(conf))
        skipped = run_reco("train", "--skip-if-busy", "-w", str(warehouse), "-c", str(conf))
    assert busy.returncode == 3 and "already running" in busy.stderr and "Traceback" not in busy.stderr
    assert skipped.returncode == 0 and "skipped" in skipped.stderr
    assert busy.stdout.strip() == skipped.stdout.strip() == ""  # nothing was read or trained
    assert ModelRegistry(warehouse).latest() is None


# Runs argv[1:] with SIGINT at its default, as from a terminal: a job started in the background
# by a non-interactive shell (a CI runner's, say) inherits SIGINT ignored.
SIGINT_AS_IN_A_TERMINAL = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def test_ctrl_c_during_training_exits_130_and_publishes_nothing(setup):
    warehouse, conf, data = setup
    commit_events(warehouse, data.slice(0, 300), 0)
    train = reco_cmd("train", "-w", str(warehouse), "-c", str(conf))
    proc = Process(
        [sys.executable, "-c", SIGINT_AS_IN_A_TERMINAL, *train],
        env={"RECO_TRAIN_SASREC_EPOCHS": "1000", "RECO_TRAIN_PATIENCE": "1000"},
    )
    proc.wait_for(lambda text: "full training" in text, timeout=120)
    time.sleep(4)  # into the epochs (a fit of 1,000 takes far longer)
    proc.signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130, "interrupted, as every command (Lightning alone exits 1)"
    assert "Traceback" not in proc.stderr()
    assert ModelRegistry(warehouse).latest() is None, "an interrupted training publishes nothing"
    rerun = run_reco("train", "-w", str(warehouse), "-c", str(conf))
    assert rerun.returncode == 0 and ModelRegistry(warehouse).latest() == 1, "and leaves no lock"


@pytest.mark.slow
def test_sigkill_during_training_leaves_the_previous_version_and_cursor(setup):
    warehouse, conf, data = setup
    commit_events(warehouse, data.slice(0, 300), 0)
    WarehouseTrainer(settings_for(warehouse, conf)).run()
    rng = random.Random(5)
    for trial in range(2):
        commit_events(warehouse, data.slice(300 + 200 * trial, 200), trial + 1)
        before = ModelRegistry(warehouse)
        latest, versions = before.latest(), before.versions()
        cursor = before.metadata(latest)["cursor"]
        # A fine-tune long enough to be killed in the middle, at a random moment.
        proc = Process(
            reco_cmd("train", "-w", str(warehouse), "-c", str(conf)),
            env={"RECO_TRAIN_FINETUNE_EPOCHS": "400"},
        )
        proc.wait_for(lambda text: "fine-tuning" in text, timeout=120)
        time.sleep(rng.uniform(0.2, 2.0))
        proc.kill_group()
        assert proc.proc.returncode == -signal.SIGKILL
        after = ModelRegistry(warehouse)
        assert (after.latest(), after.versions()) == (latest, versions)
        assert after.metadata(latest)["cursor"] == cursor
        load_version(after)  # still whole
        # The rerun trains on exactly the rows the killed run had.
        rerun = WarehouseTrainer(settings_for(warehouse, conf)).run()
        assert rerun.version == latest + 1 and rerun.rows[catalog.EVENTS.name] == 200
    assert_every_row_consumed_once(warehouse)


def test_ingest_train_fine_tunes_after_each_batch_and_consumes_every_row_once(spark, setup, tmp_path):
    """`reco ingest --once --train` (in-process, on the shared Spark session): k micro-batches
    through real streaming ingest, a fine-tune after each, one line per batch with its time and
    version; the union of the rows consumed by the published versions is every row, none twice."""
    from typer.testing import CliRunner

    from recocli.cli import app

    warehouse, conf, _ = setup
    landing = tmp_path / "landing"
    lines, _ = generate_lines(800, seed=3, feedback_share=0.2)
    for n in range(4):
        write_landing_file(landing, "events", f"e{n}.jsonl", lines["events"][n * 160 : (n + 1) * 160])
        write_landing_file(landing, "feedback", f"f{n}.jsonl", lines["feedback"][n * 40 : (n + 1) * 40])
    args = [
        "ingest",
        "--once",
        "--train",
        "--max-files-per-batch",
        "1",
        "-w",
        str(warehouse),
        "-c",
        str(conf),
    ]
    done = CliRunner().invoke(app, [*args, "--landing", str(landing)])
    assert done.exit_code == 0, done.output
    tuned = [text for text in done.output.splitlines() if "fine-tune" in text]
    assert len(tuned) == 4, done.output
    assert tuned[0].startswith("batch 0: fine-tune ") and "→ model v1 (full)" in tuned[0]
    for n, text in enumerate(tuned[1:], start=1):
        assert (
            text.startswith(f"batch {n}: fine-tune ") and f"→ model v{n + 1} (incremental from v{n})" in text
        )
    assert_every_row_consumed_once(warehouse)
    # Feedback rows were consumed too, each once.
    registry = ModelRegistry(warehouse)
    feedback_rows = sum(registry.metadata(v)["rows"][catalog.FEEDBACK.name] for v in lineage(registry))
    assert feedback_rows == delta.read_table(Warehouse(warehouse).uri(catalog.FEEDBACK)).num_rows > 0


def test_every_version_keeps_its_training_curve_checksummed_and_models_show_summarises_it(setup):
    warehouse, conf, data = setup
    w, c = ("-w", str(warehouse)), ("-c", str(conf))
    commit_events(warehouse, data.slice(0, 600), 0)
    validated = {"RECO_TRAIN_SASREC_VAL_USERS": "50"}
    first = run_reco("train", "--full", "--accelerator", "cpu", "--epochs", "3", *w, *c, env=validated)
    assert first.returncode == 0 and "device: cpu" in first.stdout, first.stderr
    commit_events(warehouse, data.slice(600, 300), 1)
    assert run_reco("train", "--accelerator", "cpu", *w, *c).returncode == 0
    registry = ModelRegistry(warehouse)
    full, tuned = registry.training_curve(1), registry.training_curve(2)
    assert [e["epoch"] for e in full] == list(range(registry.metadata(1)["metrics"]["epochs"]))
    assert all("train_loss" in e and "val_hr10" in e for e in full)
    assert full[-1]["train_loss"] < full[0]["train_loss"]
    assert [e["epoch"] for e in tuned] == [0, 1, 2], "the fine-tune's finetune_epochs"
    assert "training_log/metrics.csv" in registry.metadata(2)["files"]
    shown = run_reco("models", "show", "1", *w)
    assert shown.returncode == 0 and "curve.epochs" in shown.stdout and "curve.val_hr10" in shown.stdout
    with open(registry.path(1) / "training_log" / "metrics.csv", "a") as log:
        log.write("9,9,0.0,0.0,0.0\n")
    tampered = run_reco("models", "show", "1", *w)
    assert tampered.returncode == 2 and "metrics.csv does not match its checksum" in tampered.stderr
    assert run_reco("train", "--accelerator", "abacus", *w, *c).returncode == 2
