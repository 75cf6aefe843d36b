"""Errors a user can act on: the CLI prints their message (no traceback) and exits with their code."""


class RecoError(Exception):
    """A user mistake or an environment problem, explained in one line."""

    exit_code = 2


class BusyError(RecoError):
    """Another process holds the lock this job needs (cron overlap, a second ingest)."""

    exit_code = 3
