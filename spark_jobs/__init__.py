"""Everything that needs a JVM: streaming ingest and Spark-based peers.

Each job also runs under spark-submit.
"""
