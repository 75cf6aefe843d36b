"""`reco evaluate`: offline (leave-last-out) and real-time (prequential) evaluation against peers.

source (bronze tables or a MovieLens folder → interactions), metrics (pure NumPy/torch), split
(leave-last-out, prequential windows), peers (popularity, the common catalog), loo and
prequential (the protocols), report (metrics.json, summary.md, plots). The recency-popularity
prior the models blend in lives with the models (recocli.models.prior).
Spark MLlib ALS lives in spark_jobs.als and is imported only when asked for (no JVM on a GPU box).
"""

from __future__ import annotations
