"""Training: bronze rows → interactions → Lightning fits (in memory: fit.py; on the warehouse with
cursor, replay and registry: incremental.py). No pyspark here."""
