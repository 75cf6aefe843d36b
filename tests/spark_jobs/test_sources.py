"""Config → Spark source options: Kafka's reader options and the file source's micro-batch cap."""

import pytest

from lakehouse.errors import RecoError
from lakehouse.settings import Size
from spark_jobs.settings import IngestSettings, KafkaSettings, load_job_settings
from spark_jobs.sources import file_batch_cap, kafka_reader_options


def test_kafka_settings_map_to_reader_options():
    kafka = KafkaSettings(
        bootstrap_servers="b1:9092,b2:9092",
        events_topic="ev",
        feedback_topic="fb",
        starting_offsets="latest",
        max_offsets_per_batch=5000,
        options={"kafka.security.protocol": "SASL_SSL", "failOnDataLoss": "false"},
    )
    assert kafka_reader_options(kafka) == {
        "kafka.bootstrap.servers": "b1:9092,b2:9092",
        "subscribe": "ev,fb",
        "startingOffsets": "latest",
        "maxOffsetsPerTrigger": "5000",
        "kafka.security.protocol": "SASL_SSL",
        # extra options win, even over reco's own (the user asked for it)
        "failOnDataLoss": "false",
    }


def test_kafka_defaults_cap_batches_and_fail_on_lost_offsets():
    options = kafka_reader_options(KafkaSettings(bootstrap_servers="b:9092"))
    assert options["maxOffsetsPerTrigger"] == "1000000"
    assert options["failOnDataLoss"] == "true"
    assert options["subscribe"] == "reco.events,reco.feedback"


def test_kafka_cap_0_means_no_cap():
    options = kafka_reader_options(KafkaSettings(bootstrap_servers="b:9092", max_offsets_per_batch=0))
    assert "maxOffsetsPerTrigger" not in options


def test_kafka_without_bootstrap_servers_is_explained():
    with pytest.raises(RecoError, match="bootstrap_servers"):
        kafka_reader_options(KafkaSettings())


@pytest.mark.parametrize(
    ("max_bytes", "max_files", "options"),
    [
        ("128MB", 0, {"maxBytesPerTrigger": str(128 << 20)}),
        ("64kb", 0, {"maxBytesPerTrigger": str(64 << 10)}),
        ("1GiB", 0, {"maxBytesPerTrigger": str(1 << 30)}),
        ("5000", 0, {"maxBytesPerTrigger": "5000"}),
        ("0", 0, {}),
        ("128MB", 7, {"maxFilesPerTrigger": "7"}),
    ],
)
def test_file_batch_cap(max_bytes, max_files, options):
    ingest = IngestSettings(max_bytes_per_batch=Size(max_bytes), max_files_per_batch=max_files)
    assert file_batch_cap(ingest) == options


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RECO_INGEST_MAX_BYTES_PER_BATCH": "lots"}, "'ingest.max_bytes_per_batch' .* must be a size"),
        ({"RECO_INGEST_MAX_BYTES_PER_BATCH": "1TB"}, "must be a size"),
        ({"RECO_INGEST_MAX_FILES_PER_BATCH": "-1"}, "0 or more"),
    ],
)
def test_bad_file_batch_cap_is_explained_when_loaded(env, message):
    with pytest.raises(RecoError, match=message):
        load_job_settings(env=env)
