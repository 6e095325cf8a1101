"""Durable file writes shared by the local backends (folder mailbox, outbox, xlsx)."""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import sys
from pathlib import Path

# Files and folders the service creates hold special-category personal data (concern text,
# names): readable by the service's own user only, whatever the umask. A file it replaces
# keeps the mode the administrator gave it.
PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


def create_private(path: Path, *, like: Path | None = None) -> None:
    """Create ``path`` empty with mode 0600 (or the mode of ``like`` when that exists);
    ``FileExistsError`` if it exists. Writers then truncate it, which keeps the mode."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
    if like is not None:
        with contextlib.suppress(FileNotFoundError):
            os.chmod(path, stat.S_IMODE(like.stat().st_mode))


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
        create_private(tmp, like=path)
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
