"""A SparkSession from Settings, after checking that a Java 17+ is there to run it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from pyspark.sql import SparkSession

from lakehouse.errors import RecoError
from spark_jobs.settings import SparkSettings

MIN_JAVA = 17

# Fixed for correctness, whatever the cluster default: event times are UTC and a JSON object
# that repeats a key keeps the last value instead of failing the whole micro-batch.
REQUIRED_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.mapKeyDedupPolicy": "LAST_WIN",
}
# Defaults a cluster's conf may override. PySpark records the Python call site of every Column
# call for error messages, four JVM round trips each; the ingest job builds its hundreds of fixed
# validation expressions at every start (0.5 s of a `reco ingest --once` here, 0.3 s without).
DEFAULT_CONF = {"spark.python.sql.dataFrameDebugging.enabled": "false"}
LOG4J = Path(__file__).with_name("log4j2.properties")
LOCAL_CONF = {
    "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile={LOG4J.as_uri()}",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "4",
    "spark.sql.streaming.forceDeleteTempCheckpointLocation": "true",
    "spark.driver.memory": "4g",
    "spark.sql.execution.arrow.maxRecordsPerBatch": "100000",
}


def java_version(java: str) -> int | None:
    """Major version printed by `java -version`, or None when it does not run."""
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def find_java() -> str:
    """The java that Spark will use (JAVA_HOME first, as spark-submit does), checked to be 17+."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not Path(java).exists():
        raise RecoError(
            f"Spark needs Java {MIN_JAVA}+ and none was found: run `make install` (installs Debian's "
            "openjdk-17-jre-headless) or set JAVA_HOME"
        )
    version = java_version(java)
    if version is None or version < MIN_JAVA:
        raise RecoError(f"Spark needs Java {MIN_JAVA}+, but {java} is version {version}: set JAVA_HOME")
    return java


def under_spark_submit() -> bool:
    """spark-submit starts the JVM first and hands PySpark its gateway port."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def build_session(settings: SparkSettings) -> SparkSession:
    """Local mode by default; under spark-submit the cluster's master and conf win."""
    builder = SparkSession.builder.appName(settings.app_name)
    if not under_spark_submit():
        find_java()
        # Python UDFs (recommend's Spark engine) run in workers of this interpreter, not "python3"
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = builder.master(settings.master)
        for key, value in LOCAL_CONF.items():
            builder = builder.config(key, value)
    for key, value in {**DEFAULT_CONF, **settings.conf, **REQUIRED_CONF}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(settings.log_level)
    return spark
