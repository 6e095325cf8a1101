"""A mailbox that is a folder of ``.eml`` files (the local demo, or mail exported by a rule).

Layout::

    inbox/                    people (or a mail rule) drop ``*.eml`` files here
    inbox/processed/          done items, renamed ``<item id>--<original name>``
    inbox/quarantine/         items that need a person, each with ``<name>.reason.txt`` beside it

``item_id`` is ``eml-`` plus a hash of the file's bytes, not the file name: a name can be reused
(``concern.eml`` dropped twice on different days must be two items, not a replay) and can carry
a person's name, which must not reach the ledger or logs. The same bytes dropped twice are the
same message, and the ledger treats the second as a replay.

Files are skipped until they have settled (modified more than ``settle_seconds`` ago), so a
file still being copied in is read on a later poll. Hidden, temporary and partial files
(``.*``, ``~*``, ``*.tmp``, ``*.part``…) are ignored. Symbolic links are never followed: a link
is moved into ``quarantine/`` as it is. A file over ``intake.max_message_bytes`` is quarantined
unread. Moves never overwrite (a name already taken gets a counter). Attachment names are never
used for anything here.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from connectors.base import CheckResult, InboundItem
from connectors.files import PRIVATE_DIR, PRIVATE_FILE, fsync_dir, write_atomic
from service.errors import InputError, PermanentError, TransientError

if TYPE_CHECKING:
    from service.config import Config, FolderMailboxConfig
    from service.ledger import Ledger

log = logging.getLogger(__name__)

_ID_RE = re.compile(r"^(eml|aside)-[0-9a-f]{32}$")
_IGNORED_SUFFIXES = (".tmp", ".temp", ".part", ".partial", ".crdownload", ".download", ".swp")
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_BINARY = getattr(os, "O_BINARY", 0)
# Windows' os.link has no follow_symlinks (NotImplementedError); the scan skips symlinks anyway.
_LINK_NO_FOLLOW = {"follow_symlinks": False} if os.link in os.supports_follow_symlinks else {}
_MAX_NAME_BYTES = 200  # leaves room for "<id>.<n>--" and ".reason.txt" under NAME_MAX (255)


def item_id_for(raw: bytes) -> str:
    return "eml-" + hashlib.sha256(raw).hexdigest()[:32]


def _ignored(name: str) -> bool:
    lower = name.lower()
    return name.startswith((".", "~")) or lower.endswith(_IGNORED_SUFFIXES)


def _short(name: str) -> str:
    """``name`` cut to fit in ``_MAX_NAME_BYTES`` of UTF-8, keeping its extension."""
    data = name.encode("utf-8", "surrogateescape")
    if len(data) <= _MAX_NAME_BYTES:
        return name
    _stem, dot, ext = name.rpartition(".")
    ext = (dot + ext) if dot and len(ext) <= 10 else ""
    keep = data[: _MAX_NAME_BYTES - len(ext.encode("utf-8", "surrogateescape"))]
    return keep.decode("utf-8", "ignore") + ext


class FolderMailbox:
    def __init__(
        self,
        path: Path,
        *,
        max_message_bytes: int = 25 * 1024 * 1024,
        settle_seconds: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.processed_dir = self.path / "processed"
        self.quarantine_dir = self.path / "quarantine"
        self.max_message_bytes = max_message_bytes
        self.settle_seconds = settle_seconds
        self._clock = clock
        # name -> ((mtime_ns, size, inode), item id): hash each file once
        self._ids: dict[str, tuple[tuple[int, int, int], str]] = {}
        self._yielded: set[tuple[str, str]] = set()
        # Files set aside by this backend, reported to the pipeline so the DSP is told.
        self._aside: list[InboundItem] = []
        self._others_reported = 0
        self._settling = 0  # files the last listing left for the next poll (not settled)
        self._ensure_folders()

    @classmethod
    def from_config(
        cls, section: FolderMailboxConfig, config: Config, ledger: Ledger | None = None
    ) -> FolderMailbox:
        return cls(section.path, max_message_bytes=config.intake.max_message_bytes)

    def provision(self) -> Iterator[CheckResult]:
        """``prevent-service provision``: the folders are made when the mailbox is opened."""
        for folder in (self.path, self.processed_dir, self.quarantine_dir):
            yield CheckResult(f"folder {folder}", True, "ready")

    def _ensure_folders(self) -> None:
        for folder in (self.path, self.processed_dir, self.quarantine_dir):
            if folder.is_symlink():
                raise PermanentError(
                    f"{folder} is a symbolic link; the mailbox folder and its processed/ and "
                    "quarantine/ folders must be real folders"
                )
            try:
                # processed/ and quarantine/ hold concern text: the service's user only
                mode = 0o777 if folder == self.path else PRIVATE_DIR
                folder.mkdir(mode, parents=True, exist_ok=True)
            except OSError as exc:
                raise PermanentError(
                    f"cannot create the mailbox folder {folder}: {exc.strerror}; "
                    "check the path in the config and its permissions"
                ) from exc

    # -- Mailbox protocol ----------------------------------------------------------------

    def fetch_new(self) -> Iterator[InboundItem]:
        for name, st in self._candidates():
            if st.st_size > self.max_message_bytes:
                self._set_aside(
                    self.path / name,
                    _short(name),
                    f"The file is {st.st_size:,} bytes, over the limit of "
                    f"{self.max_message_bytes:,} (intake.max_message_bytes); it was not read. "
                    "Read it by hand, or raise the limit and move it back into the inbox folder.",
                )
                continue
            item = self._read(self.path / name, name, expect=st)
            yield from self._drain_aside()
            if item is None or (name, item.item_id) in self._yielded:
                continue
            self._yielded.add((name, item.item_id))
            yield item
        yield from self._drain_aside()

    def _drain_aside(self) -> Iterator[InboundItem]:
        while self._aside:
            yield self._aside.pop(0)

    def fetch(self, item_id: str) -> InboundItem:
        self._check_id(item_id)
        for name in self._inbox_names_for(item_id):
            item = self._read(self.path / name, name)
            if item is not None and item.item_id == item_id:
                return item
        if item_id.startswith("aside-"):
            for path in self._moved(self.quarantine_dir, item_id):
                note = path.with_name(path.name + ".reason.txt")
                reason = note.read_text("utf-8").split("\n", 1)[0] if note.exists() else ""
                return InboundItem(item_id=item_id, raw=b"", problem=reason or "set aside")
        for folder in (self.processed_dir, self.quarantine_dir):
            for path in self._moved(folder, item_id):
                item = self._read(path, path.name)
                if item is not None:
                    return item
        raise InputError(f"mailbox item {item_id} not found in {self.path} (moved or deleted)")

    def mark_processed(self, item_id: str) -> None:
        self._check_id(item_id)
        names = self._inbox_names_for(item_id)
        if not names:
            if self._moved(self.processed_dir, item_id) or self._moved(
                self.quarantine_dir, item_id
            ):
                return  # already done (idempotent)
            raise InputError(f"mailbox item {item_id} not found in {self.path}")
        for name in names:
            self._move(self.path / name, self.processed_dir, f"{item_id}--{_short(name)}")

    def quarantine(self, item_id: str, reason: str) -> None:
        self._check_id(item_id)
        names = self._inbox_names_for(item_id)
        if names:
            for name in names:
                self._quarantine_file(self.path / name, f"{item_id}--{_short(name)}", reason)
            return
        if self._moved(self.quarantine_dir, item_id):
            return  # already quarantined (idempotent)
        processed = self._moved(self.processed_dir, item_id)
        if not processed:
            raise InputError(f"mailbox item {item_id} not found in {self.path}")
        for path in processed:
            self._quarantine_file(path, path.name, reason)

    def close(self) -> None:
        self._ids.clear()

    def waiting(self) -> tuple[int, str]:
        why = f"arrived in the last {self.settle_seconds:.0f}s and may still be being written"
        return self._settling, why

    # -- helpers -------------------------------------------------------------------------

    @staticmethod
    def _check_id(item_id: str) -> None:
        if not _ID_RE.match(item_id):
            raise InputError(f"not a folder mailbox item id: {item_id[:60]!r}")

    def _candidates(self) -> list[tuple[str, os.stat_result]]:
        """Settled ``.eml`` files in the inbox, oldest first; odd entries dealt with."""
        now = self._clock()
        out: list[tuple[str, os.stat_result]] = []
        settling = others = 0
        try:
            entries = list(os.scandir(self.path))
        except OSError as exc:
            raise TransientError(
                f"cannot list the mailbox folder {self.path}: {exc.strerror}; will retry"
            ) from exc
        for entry in entries:
            name = entry.name
            if _ignored(name):
                continue
            try:
                if entry.is_symlink():
                    self._set_aside(
                        self.path / name,
                        _short(name),
                        "This is a symbolic link; links are never followed. Copy the message "
                        "file itself into the inbox folder.",
                    )
                    continue
                if not entry.is_file(follow_symlinks=False):
                    continue  # processed/, quarantine/, other folders and devices
                lower = name.lower()
                if lower.endswith(".msg"):
                    self._set_aside(
                        self.path / name,
                        _short(name),
                        "Outlook .msg files cannot be read. Forward the message to the "
                        "safeguarding mailbox instead, or save it in .eml format and drop that "
                        "file in the inbox folder.",
                    )
                    continue
                if not lower.endswith(".eml"):
                    others += 1
                    continue
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # gone meanwhile
            if now - st.st_mtime < self.settle_seconds:
                settling += 1
                continue  # probably still being written; next poll
            out.append((name, st))
        self._settling = settling
        if settling:
            log.info(
                "%d file(s) arrived in the last %.0fs; taken on the next poll",
                settling,
                self.settle_seconds,
            )
        if others and others != self._others_reported:
            # Said once per change, without names (a file name can carry a person's name).
            log.warning("%d file(s) in the inbox folder are not .eml and are ignored", others)
        self._others_reported = others
        out.sort(key=lambda pair: (pair[1].st_mtime_ns, pair[0]))
        return out

    def _read(
        self, path: Path, name: str, expect: os.stat_result | None = None
    ) -> InboundItem | None:
        """Read one file without following links; ``None`` if it changed or vanished."""
        try:
            fd = os.open(path, os.O_RDONLY | _O_NOFOLLOW | _O_BINARY)
        except FileNotFoundError:
            return None
        except PermissionError:
            if path.parent == self.path:
                self._set_aside(
                    path,
                    _short(name),
                    "The service was not allowed to read this file (permission denied). "
                    "Check its permissions and move it back into the inbox folder.",
                )
            return None
        except OSError as exc:  # ELOOP: swapped for a link since listing
            log.warning("skipped a mailbox file that could not be opened (%s)", exc.strerror)
            return None
        try:
            st = os.fstat(fd)
            key = (st.st_mtime_ns, st.st_size, st.st_ino)
            if expect is not None and key != (expect.st_mtime_ns, expect.st_size, expect.st_ino):
                return None  # changed since listing: still being written
            if st.st_size > self.max_message_bytes:
                return None
            with os.fdopen(os.dup(fd), "rb") as fh:
                raw = fh.read(self.max_message_bytes + 1)
        finally:
            os.close(fd)
        if len(raw) != st.st_size:
            return None
        cached = self._ids.get(name)
        if cached is not None and cached[0] == key and path.parent == self.path:
            item_id = cached[1]
        else:
            item_id = item_id_for(raw)
            if path.parent == self.path:
                self._ids[name] = (key, item_id)
        return InboundItem(
            item_id=item_id,
            raw=raw,
            received_at=datetime.fromtimestamp(st.st_mtime, UTC),
        )

    def _inbox_names_for(self, item_id: str) -> list[str]:
        """Inbox file names whose bytes hash to ``item_id`` (identical copies included)."""
        names: list[str] = []
        for name, st in self._candidates_any_age():
            key = (st.st_mtime_ns, st.st_size, st.st_ino)
            cached = self._ids.get(name)
            if cached is None or cached[0] != key:
                if st.st_size > self.max_message_bytes:
                    continue
                item = self._read(self.path / name, name, expect=st)
                if item is None:
                    continue
                cached = (key, item.item_id)
            if cached[1] == item_id:
                names.append(name)
        return names

    def _candidates_any_age(self) -> list[tuple[str, os.stat_result]]:
        out: list[tuple[str, os.stat_result]] = []
        for entry in os.scandir(self.path):
            if _ignored(entry.name) or not entry.name.lower().endswith(".eml"):
                continue
            with contextlib.suppress(FileNotFoundError):
                if entry.is_file(follow_symlinks=False):
                    out.append((entry.name, entry.stat(follow_symlinks=False)))
        return out

    @staticmethod
    def _moved(folder: Path, item_id: str) -> list[Path]:
        """Files moved to ``folder`` for ``item_id`` (``<id>--name`` or ``<id>.<n>--name``)."""
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return []
        return [
            folder / n
            for n in sorted(names)
            if n.startswith(item_id)
            and n[len(item_id) : len(item_id) + 1] in {"-", "."}
            and not n.endswith(".reason.txt")
        ]

    def _move(self, src: Path, folder: Path, name: str) -> Path:
        """Move ``src`` into ``folder`` as ``name``, never overwriting (a counter is added)."""
        for n in range(1000):
            if n == 0:
                candidate = name
            elif "--" in name:
                head, _, tail = name.partition("--")
                candidate = f"{head}.{n}--{tail}"
            else:
                candidate = f"{n}-{name}"
            dst = folder / candidate
            try:
                _link_no_clobber(src, dst)
            except FileExistsError:
                continue
            except FileNotFoundError:
                return dst  # someone (another poll) moved it meanwhile
            except OSError as exc:
                raise TransientError(
                    f"cannot move a mailbox file into {folder}: {exc.strerror}; will retry"
                ) from exc
            _make_private(dst)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(src)
            fsync_dir(folder)
            fsync_dir(src.parent)
            self._ids.pop(src.name, None)
            # Out of the inbox: if a person puts it back (a quarantined file once mended), it
            # is new to this process again and must be yielded, not passed over for good.
            self._yielded = {seen for seen in self._yielded if seen[0] != src.name}
            return dst
        raise PermanentError(f"too many files named like {name[:40]!r} in {folder}; tidy it up")

    def _set_aside(self, src: Path, name: str, reason: str) -> None:
        """Quarantine a file the backend itself cannot take; a failure waits for the next poll."""
        try:
            st = src.lstat()
        except FileNotFoundError:
            return
        seed = f"{src.name}\0{st.st_mtime_ns}\0{st.st_size}".encode("utf-8", "surrogateescape")
        item_id = "aside-" + hashlib.sha256(seed).hexdigest()[:32]
        try:
            self._quarantine_file(src, f"{item_id}--{name}", reason)
        except (TransientError, PermanentError, OSError):
            log.warning("could not quarantine a mailbox file; will retry on the next poll")
            return
        self._aside.append(InboundItem(item_id=item_id, raw=b"", problem=reason))

    def _quarantine_file(self, src: Path, name: str, reason: str) -> None:
        dst = self._move(src, self.quarantine_dir, name)
        note = dst.with_name(dst.name + ".reason.txt")
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        text = f"{reason}\n\nQuarantined at {stamp} by prevent-service.\n"
        try:
            write_atomic(note, text.encode("utf-8"))
        except OSError as exc:  # e.g. a full disk: the file is aside already and the DSP's
            # notice carries the reason; raising would only stop the cycle
            log.warning("could not write a quarantine reason note: %s", exc.strerror)
        log.warning("quarantined a mailbox file (%s)", dst.name.partition("--")[0][:40])


def _make_private(path: Path) -> None:
    """A dropped file keeps the mode it was written with (often 0644); once taken, it holds
    concern text, so processed/ and quarantine/ hold files for the service's user only."""
    try:
        os.chmod(path, PRIVATE_FILE)
    except FileNotFoundError:
        pass
    except OSError:  # a file another account owns: the 0700 folder still keeps others out
        log.warning("could not make a moved mailbox file private (it is owned by another user)")


def _link_no_clobber(src: Path, dst: Path) -> None:
    """Give ``src`` the name ``dst`` too; ``FileExistsError`` if ``dst`` exists (no overwrite)."""
    try:
        os.link(src, dst, **_LINK_NO_FOLLOW)
    except (FileExistsError, FileNotFoundError):
        raise
    except OSError:  # no hard links here, or not allowed to link another user's file
        # File systems without hard links: check, then rename (a small race, only with
        # ourselves, since people do not write into processed/ or quarantine/).
        if os.path.lexists(dst):
            raise FileExistsError(dst) from None
        os.rename(src, dst)
