"""The lab: evaluation protocols, the simulated world and the demo loop.

It depends on the product (models, training, the ranker, recommend); nothing in the product imports it.
"""
