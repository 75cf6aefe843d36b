"""reco: a real-time recommender loop (command line, models, training, recommending)."""

__version__ = "0.1.0"
