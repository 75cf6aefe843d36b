"""The two ways a micro-batch reaches Delta, and the choice between them.

Both commit each table once per (app id, batch id): delta-rs by checking the table's recorded
app transaction first, Spark's native sink through txnAppId/txnVersion.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import pyarrow as pa

from lakehouse import delta
from lakehouse.catalog import TableSpec, Warehouse
from lakehouse.errors import RecoError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

DELTA_RS, SPARK_DELTA = "delta-rs", "spark-delta"
DELTA_SOURCE_CLASS = "org.apache.spark.sql.delta.sources.DeltaDataSource"


class BatchWriter(Protocol):
    name: str

    def append_once(self, spec: TableSpec, data: pa.Table, batch_id: int) -> bool: ...


def choose_writer(setting: str, delta_on_classpath: bool) -> str:
    """`auto` takes Spark's native sink only when Delta's jars are loaded; never silently falls back."""
    if setting == "auto":
        return SPARK_DELTA if delta_on_classpath else DELTA_RS
    if setting == SPARK_DELTA and not delta_on_classpath:
        raise RecoError(
            "ingest.writer = spark-delta needs Delta's jars on Spark's classpath "
            "(spark-submit --packages io.delta:delta-spark_2.13:<version>), or use writer = auto"
        )
    return setting


def on_classpath(spark: SparkSession, class_name: str) -> bool:
    """Whether Spark can load `class_name` (a package given to --packages, or not)."""
    jvm = spark.sparkContext._jvm
    loader = jvm.java.lang.Thread.currentThread().getContextClassLoader()
    try:
        jvm.java.lang.Class.forName(class_name, False, loader)
    except Exception:
        return False
    return True


def delta_on_classpath(spark: SparkSession) -> bool:
    """Whether Spark can load Delta's data source class."""
    return on_classpath(spark, DELTA_SOURCE_CLASS)


class DeltaRsWriter:
    name = DELTA_RS

    def __init__(self, warehouse: Warehouse, app_id: str) -> None:
        self.warehouse, self.app_id = warehouse, app_id

    def append_once(self, spec: TableSpec, data: pa.Table, batch_id: int) -> bool:
        return delta.append_once(self.warehouse.uri(spec), spec, data, self.app_id, batch_id)


class SparkDeltaWriter:
    name = SPARK_DELTA

    def __init__(self, spark: SparkSession, warehouse: Warehouse, app_id: str) -> None:
        self.spark, self.warehouse, self.app_id = spark, warehouse, app_id

    def append_once(self, spec: TableSpec, data: pa.Table, batch_id: int) -> bool:
        return self.append_frame(spec, self.spark.createDataFrame(delta.conform(data, spec)), batch_id)

    def append_frame(self, spec: TableSpec, frame: DataFrame, batch_id: int) -> bool:
        """A Spark DataFrame (its rows stay on the executors) appended once per (app id, batch id)."""
        uri = self.warehouse.uri(spec)
        delta.ensure_table(uri, spec)
        writer = frame.write.format("delta").mode("append")
        writer = writer.option("txnAppId", self.app_id).option("txnVersion", batch_id)
        if spec.partition_by:
            writer = writer.partitionBy(*spec.partition_by)
        writer.save(uri)
        return True


def make_writer(setting: str, spark: SparkSession, warehouse: Warehouse, app_id: str) -> BatchWriter:
    if choose_writer(setting, delta_on_classpath(spark)) == SPARK_DELTA:
        return SparkDeltaWriter(spark, warehouse, app_id)
    return DeltaRsWriter(warehouse, app_id)
