"""Durable file writes shared by the local backends (folder mailbox, outbox, xlsx)."""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
from pathlib import Path


def fsync_dir(folder: Path) -> None:
    """Make a rename or link in ``folder`` survive a power cut (no-op where unsupported)."""
    if sys.platform == "win32":  # pragma: no cover - directories cannot be opened on Windows
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
