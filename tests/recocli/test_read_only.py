"""A read-only warehouse: each command that would write says so in one line, exit 2 (issue 23)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import REPO, event, run_reco

from lakehouse import catalog, delta
from lakehouse.catalog import Warehouse
from lakehouse.registry import ModelRegistry
from recocli.config import MFSettings, RankSettings
from recocli.models import build_model
from recocli.models.store import model_config, publish_version
from recocli.models.vocab import Vocabs, Vocabulary
from recocli.recommend.ranker import Ranker


@pytest.fixture(scope="module")
def read_only(tmp_path_factory):
    root = tmp_path_factory.mktemp("ro")
    source, mounted = root / "source", root / "mounted"
    warehouse = Warehouse(source / "warehouse")
    for spec in catalog.INGEST_TABLES:
        delta.ensure_table(warehouse.uri(spec), spec)
    model = build_model("mf", 3, 4, MFSettings(dim=8))
    vocabs = Vocabs(Vocabulary([f"u{n}" for n in range(3)]), Vocabulary([f"i{n}" for n in range(4)]))
    meta = {"config": {"model": model_config(model)}, "cursor": {}}
    ranker = Ranker.new(model, vocabs, RankSettings()).state
    publish_version(ModelRegistry(warehouse), model, vocabs, meta, parent=None, ranker=ranker)
    (source / "landing" / "events").mkdir(parents=True)
    (source / "landing" / "events" / "a.jsonl").write_text(json.dumps(event(1)) + "\n")
    mounted.mkdir()
    bind = subprocess.run(["mount", "--bind", str(source), str(mounted)], capture_output=True)
    if bind.returncode != 0:
        pytest.skip(f"cannot bind-mount a read-only folder here: {bind.stderr.decode().strip()}")
    subprocess.run(["mount", "-o", "remount,bind,ro", str(mounted)], check=True)
    yield mounted
    subprocess.run(["umount", str(mounted)], check=True)


@pytest.mark.parametrize(
    "args",
    [
        ("ingest", "--once", "--landing", "{root}/landing"),
        ("recommend", "--users", "u1"),
        ("models", "rollback", "1"),
    ],
)
def test_each_writing_command_says_it_cannot_write_in_one_line(read_only, args):
    done = run_reco(*(a.format(root=read_only) for a in args), "-w", str(read_only / "warehouse"))
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.count("\n") == 1 and "read-only" in done.stderr.lower(), done.stderr[-2000:]


def test_the_spark_submit_entry_point_says_it_cannot_write_in_one_line(read_only):
    where = ["--landing", str(read_only / "landing"), "--warehouse", str(read_only / "warehouse")]
    done = subprocess.run(
        [sys.executable, "-m", "spark_jobs.ingest", "--once", *where],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.count("\n") == 1 and "read-only" in done.stderr.lower(), done.stderr[-2000:]
