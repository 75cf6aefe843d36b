from pathlib import Path

import pytest
from helpers import REPO

from lakehouse.errors import RecoError
from lakehouse.settings import parse_duration, parse_size
from recocli.config import Settings, load_settings


def test_conf_reco_toml_equals_the_builtin_defaults():
    assert load_settings(REPO / "conf" / "reco.toml", env={}) == Settings()


def test_cluster_example_loads_and_selects_kafka():
    settings = load_settings(REPO / "conf" / "cluster.toml", env={})
    assert settings.ingest.source == "kafka"
    assert settings.ingest.kafka.max_offsets_per_batch == 500000
    assert settings.spark.conf == {"spark.sql.shuffle.partitions": "64"}


def test_file_then_env_then_flags(tmp_path: Path):
    conf = tmp_path / "c.toml"
    conf.write_text('warehouse = "/from/file"\n[ingest]\ninterval = "5s"\nmax_files_per_batch = 7\n')
    env = {"RECO_INGEST_INTERVAL": "9s", "RECO_INGEST_KAFKA_MAX_OFFSETS_PER_BATCH": "12"}
    settings = load_settings(conf, env=env, overrides={"warehouse": "/from/flag", "ingest.landing": None})
    assert settings.warehouse == "/from/flag"
    assert settings.ingest.interval == "9s"
    assert settings.ingest.max_files_per_batch == 7
    assert settings.ingest.kafka.max_offsets_per_batch == 12
    assert settings.ingest.landing == "./landing"


def test_reco_config_env_names_the_file(tmp_path: Path):
    conf = tmp_path / "c.toml"
    conf.write_text('warehouse = "/w"\n')
    assert load_settings(env={"RECO_CONFIG": str(conf)}).warehouse == "/w"
    assert load_settings(env={"RECO_CONFIG": str(conf), "RECO_WAREHOUSE": "/e"}).warehouse == "/e"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[ingest]\nlandin = 'x'\n", "unknown setting 'ingest.landin'"),
        ("[ingest]\nmax_files_per_batch = 'many'\n", "must be int"),
        ("ingest = 3\n", "must be a table"),
        ("[ingest\n", "not valid TOML"),
    ],
)
def test_bad_config_files_are_explained(tmp_path: Path, text: str, message: str):
    conf = tmp_path / "c.toml"
    conf.write_text(text)
    with pytest.raises(RecoError, match=message):
        load_settings(conf, env={})


def test_bad_env_value_names_the_variable():
    with pytest.raises(RecoError, match="RECO_INGEST_MAX_LINE_BYTES"):
        load_settings(env={"RECO_INGEST_MAX_LINE_BYTES": "big"})


def test_missing_config_file():
    with pytest.raises(RecoError, match="config file not found"):
        load_settings(Path("/nonexistent.toml"), env={})


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("1s", 1),
        ("5m", 300),
        ("2h", 7200),
        ("1d", 86400),
        ("1w", 604800),
        ("3", 3),
        (1.5, 1.5),
    ],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


def test_parse_duration_rejects_nonsense():
    with pytest.raises(RecoError, match="not a duration"):
        parse_duration("soon")


@pytest.mark.parametrize(
    ("text", "size"),
    [("512", 512), ("512B", 512), ("2k", 2048), ("3 MB", 3 << 20), ("1GiB", 1 << 30), (7, 7)],
)
def test_parse_size(text, size):
    assert parse_size(text) == size
