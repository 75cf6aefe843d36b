"""Ranked lists: score the whole catalog per user in batches, mask what must not be shown, take top-K."""
