"""One cross-process file lock for the ledger's cycle locks and the local workbooks' writer lock.

An exclusive, non-blocking OS lock on a small lock file, through ``portalocker``:
``fcntl.flock`` on Linux and macOS, ``msvcrt.locking`` on Windows (an exclusive lock there
needs no pywin32). The lock belongs to the open file, so it dies with its process: a crash or
a kill never leaves a stale lock behind. The lock file itself stays (deleting it would race
with the next holder) and names its holder (pid, host, since when), as a hint for people.

``portalocker`` is imported when a lock is first taken, not when this module is imported, so
every module imports on any platform (``fcntl`` exists only on POSIX).
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from service.errors import PermanentError

POLL_SECONDS = 0.05
NOTE_BYTES = 200


class LockFileError(PermanentError):
    """The lock file cannot be created or opened (a folder without write permission)."""


@contextlib.contextmanager
def exclusive_lock(path: Path, *, wait_seconds: float = 0.0) -> Iterator[bool]:
    """Hold an exclusive lock on ``path`` (created 0600 if missing) while the block runs.

    Yields True when this process holds it, or False when another process still held it
    after ``wait_seconds`` (the block then runs without the lock: the caller decides).
    """
    import portalocker  # here, not at import: see the module docstring

    try:
        # O_BINARY: Windows opens low-level files in text mode unless told otherwise.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o600)
    except OSError as exc:
        raise LockFileError(
            f"cannot create the lock file {path}: {exc.strerror}; check the folder's permissions"
        ) from exc
    try:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                portalocker.lock(
                    fd, portalocker.LockFlags.EXCLUSIVE | portalocker.LockFlags.NON_BLOCKING
                )
                break
            except portalocker.AlreadyLocked:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(POLL_SECONDS)
        try:
            _write_note(fd)
            yield True
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            portalocker.unlock(fd)
    finally:
        os.close(fd)


def holder(path: Path) -> str:
    """Who holds the lock on ``path``, as its holder wrote it; ``unknown`` when that cannot be
    read (on Windows the locked bytes cannot be read by another process)."""
    try:
        with open(path, "rb") as handle:
            note = handle.read(NOTE_BYTES).decode("utf-8", "replace").strip()
    except OSError:
        note = ""
    return note or "unknown"


def _write_note(fd: int) -> None:
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    note = f"pid {os.getpid()} on {socket.gethostname()} since {stamp}".encode()
    # Who holds it is only a hint: a full disk must not stop the work (the save itself says
    # what is wrong). Plain lseek + write: os.pwrite does not exist on Windows.
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, note)
