"""Streaming sources: JSON-lines files in a landing folder (default) or Kafka topics (clusters).

Each source gives one streaming DataFrame per kind ("events", "feedback") with the columns
`value` (the line) and `source_file` (where it came from).
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.errors import RecoError
from lakehouse.landing import landing_dirs
from lakehouse.writers import on_classpath
from spark_jobs.settings import IngestSettings, KafkaSettings
from spark_jobs.validate import is_blank

# Files older than this (relative to the newest) would be skipped by Spark's default of 7 days:
# landed files must never be ignored, whatever their modification time.
MAX_FILE_AGE = "36500d"
KAFKA_SOURCE_CLASS = "org.apache.spark.sql.kafka010.KafkaSourceProvider"


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


def require_kafka_package(spark: SparkSession) -> None:
    """Spark's Kafka source ships apart from Spark: without it, one line saying how to add it
    (instead of Spark's 99-line failure)."""
    import pyspark

    if not on_classpath(spark, KAFKA_SOURCE_CLASS):
        coordinate = f"org.apache.spark:spark-sql-kafka-0-10_2.13:{pyspark.__version__}"
        raise RecoError(
            f"ingest.source = kafka needs Spark's Kafka package: run under spark-submit --packages "
            f'{coordinate}, or set [spark] conf = {{"spark.jars.packages" = "{coordinate}"}}'
        )


def describe_source(ingest: IngestSettings) -> str:
    """Where ingest reads from, for its first line."""
    if ingest.source == "kafka":
        kafka = ingest.kafka
        return f"kafka {kafka.bootstrap_servers} topics {kafka.events_topic}, {kafka.feedback_topic}"
    return f"landing {ingest.landing}"


def file_batch_cap(ingest: IngestSettings) -> dict[str, str]:
    """The file source's cap on a micro-batch: Spark refuses both at once, so a file cap (when set)
    replaces the byte cap. A batch always takes at least one file, however large."""
    if ingest.max_files_per_batch > 0:
        return {"maxFilesPerTrigger": str(ingest.max_files_per_batch)}
    max_bytes = ingest.max_bytes_per_batch
    return {"maxBytesPerTrigger": str(int(max_bytes))} if max_bytes > 0 else {}


def source_options(ingest: IngestSettings) -> dict[str, str]:
    """The configured source's reader options; raises on a bad setting (`reco ingest` asks before it
    starts Spark, so a mistake costs no JVM start)."""
    if ingest.source == "files":
        return file_batch_cap(ingest)
    return kafka_reader_options(ingest.kafka)


def file_streams(spark: SparkSession, landing: str, options: dict[str, str]) -> dict[str, DataFrame]:
    streams = {}
    for kind, folder in landing_dirs(landing).items():
        folder.mkdir(parents=True, exist_ok=True)
        lines = (
            spark.readStream.format("text")
            .options(**options)
            .option("maxFileAge", MAX_FILE_AGE)
            .load(str(folder))
        )
        streams[kind] = lines.select("value", F.col("_metadata.file_path").alias("source_file"))
    return streams


def kafka_streams(spark: SparkSession, kafka: KafkaSettings, options: dict[str, str]) -> dict[str, DataFrame]:
    records = spark.readStream.format("kafka").options(**options).load()
    lines = records.select(
        F.col("value").cast("string").alias("value"),
        F.format_string("kafka:%s/%d/%d", "topic", "partition", "offset").alias("source_file"),
        F.col("topic"),
    )
    topics = {"events": kafka.events_topic, "feedback": kafka.feedback_topic}
    return {kind: lines.where(F.col("topic") == topic).drop("topic") for kind, topic in topics.items()}


def source_streams(spark: SparkSession, ingest: IngestSettings) -> dict[str, DataFrame]:
    """Blank lines are not records: they are dropped before counting."""
    options = source_options(ingest)
    if ingest.source == "files":
        streams = file_streams(spark, ingest.landing, options)
    else:
        streams = kafka_streams(spark, ingest.kafka, options)
    return {kind: df.where(~is_blank(F.col("value"))) for kind, df in streams.items()}
