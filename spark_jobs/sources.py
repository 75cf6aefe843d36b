"""Streaming sources: JSON-lines files in a landing folder (default) or Kafka topics (clusters).

Each source gives one streaming DataFrame per kind ("events", "feedback") with the columns
`value` (the line) and `source_file` (where it came from).
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recocli.config import IngestSettings, KafkaSettings
from recocli.errors import RecoError
from recocli.landing import landing_dirs
from spark_jobs.validate import is_blank

# Files older than this (relative to the newest) would be skipped by Spark's default of 7 days:
# landed files must never be ignored, whatever their modification time.
MAX_FILE_AGE = "36500d"


def kafka_reader_options(kafka: KafkaSettings) -> dict[str, str]:
    """Options for spark.readStream.format("kafka") from the [ingest.kafka] settings."""
    if not kafka.bootstrap_servers:
        raise RecoError("ingest.source = kafka needs ingest.kafka.bootstrap_servers")
    options = {
        "kafka.bootstrap.servers": kafka.bootstrap_servers,
        "subscribe": f"{kafka.events_topic},{kafka.feedback_topic}",
        "startingOffsets": kafka.starting_offsets,
        # A lost offset range means lost events: fail loudly rather than skip.
        "failOnDataLoss": "true",
    }
    if kafka.max_offsets_per_batch > 0:
        options["maxOffsetsPerTrigger"] = str(kafka.max_offsets_per_batch)
    return {**options, **kafka.options}


def file_streams(spark: SparkSession, ingest: IngestSettings) -> dict[str, DataFrame]:
    streams = {}
    for kind, folder in landing_dirs(ingest.landing).items():
        folder.mkdir(parents=True, exist_ok=True)
        lines = (
            spark.readStream.format("text")
            .option("maxFilesPerTrigger", ingest.max_files_per_batch)
            .option("maxFileAge", MAX_FILE_AGE)
            .load(str(folder))
        )
        streams[kind] = lines.select("value", F.col("_metadata.file_path").alias("source_file"))
    return streams


def kafka_streams(spark: SparkSession, kafka: KafkaSettings) -> dict[str, DataFrame]:
    records = spark.readStream.format("kafka").options(**kafka_reader_options(kafka)).load()
    lines = records.select(
        F.col("value").cast("string").alias("value"),
        F.format_string("kafka:%s/%d/%d", "topic", "partition", "offset").alias("source_file"),
        F.col("topic"),
    )
    topics = {"events": kafka.events_topic, "feedback": kafka.feedback_topic}
    return {kind: lines.where(F.col("topic") == topic).drop("topic") for kind, topic in topics.items()}


def source_streams(spark: SparkSession, ingest: IngestSettings) -> dict[str, DataFrame]:
    """Blank lines are not records: they are dropped before counting."""
    if ingest.source == "files":
        streams = file_streams(spark, ingest)
    elif ingest.source == "kafka":
        streams = kafka_streams(spark, ingest.kafka)
    else:
        raise RecoError(f"ingest.source must be 'files' or 'kafka', got {ingest.source!r}")
    return {kind: df.where(~is_blank(F.col("value"))) for kind, df in streams.items()}
