"""Data in: synthetic streams, dataset import and replay."""
