"""Errors a user can act on: the CLI prints their message (no traceback) and exits with their code."""

import errno


class RecoError(Exception):
    """A user mistake or an environment problem, explained in one line."""

    exit_code = 2


class BusyError(RecoError):
    """Another process holds the lock this job needs (cron overlap, a second ingest)."""

    exit_code = 3


# OS errors that mean "this place cannot be written", by errno, and as delta-rs (Rust) words them.
_WRITE_ERRNOS = {
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "not permitted",
}
_WRITE_WORDS = ("Read-only file system", "os error 30", "Permission denied", "os error 13")


def cannot_write(exc: BaseException) -> RecoError | None:
    """A failure to write the warehouse (read-only, no permission) as one line, whether Python or
    delta-rs raised it (delta-rs may panic: a PanicException, which is not an Exception); None for
    any other failure, which stays a traceback (a bug to fix, not a user's to act on)."""
    if isinstance(exc, OSError) and exc.errno in _WRITE_ERRNOS:
        where = f" {exc.filename}" if exc.filename else ""
        return RecoError(f"cannot write{where}: {_WRITE_ERRNOS[exc.errno]} (is the warehouse read-only?)")
    message = str(exc)
    if any(words in message for words in _WRITE_WORDS):
        first = (message.strip().splitlines() or [""])[0][:300]
        return RecoError(f"cannot write the warehouse (read-only file system or no permission): {first}")
    return None


def as_reco_error(exc: BaseException) -> RecoError | None:
    """`exc` as the one line an entry point prints (`reco`, spark-submit's): a RecoError itself, or a
    failure to write the warehouse; None for an exit, an interrupt or anything else (a traceback)."""
    if isinstance(exc, RecoError):
        return exc
    if isinstance(exc, SystemExit | KeyboardInterrupt):
        return None
    return cannot_write(exc)
