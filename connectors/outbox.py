"""A sender that writes each message as an ``.eml`` file in a folder (the local demo's outbox).

Each file is written atomically (temp file, fsync, ``os.replace``) and named from the message's
``Message-ID``, so sending the same ``message_id`` again finds the file and is skipped: sends are
idempotent, like the ledger expects of a retry after an unclear failure.
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

from connectors.base import OutboundMessage
from connectors.files import PRIVATE_DIR, write_atomic
from service.errors import InputError, PermanentError, TransientError

if TYPE_CHECKING:
    from service.config import Config, OutboxSenderConfig
    from service.ledger import Ledger

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._@+=-]")
_MAX_STEM = 150


def file_name_for(message_id: str) -> str:
    """A safe, stable file name for a Message-ID: ``<a.b@example.org>`` → ``a.b@example.org.eml``.

    Anything outside ``A-Z a-z 0-9 . _ @ + = -`` becomes ``_``; when that (or shortening)
    changed the id, a short hash of the full id keeps different ids apart."""
    stripped = message_id.strip().removeprefix("<").removesuffix(">")
    stem = _UNSAFE.sub("_", stripped).lstrip(".")[:_MAX_STEM]
    if not stem or stem != stripped:
        digest = hashlib.sha256(message_id.encode("utf-8", "surrogatepass")).hexdigest()[:10]
        stem = f"{stem}-{digest}" if stem else digest
    return f"{stem}.eml"


class OutboxSender:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.path.mkdir(PRIVATE_DIR, parents=True, exist_ok=True)
        except OSError as exc:
            raise PermanentError(
                f"cannot create the outbox folder {self.path}: {exc.strerror}; "
                "check the path in the config and its permissions"
            ) from exc

    @classmethod
    def from_config(
        cls, section: OutboxSenderConfig, config: Config, ledger: Ledger | None = None
    ) -> OutboxSender:
        return cls(section.path)

    def path_for(self, message_id: str) -> Path:
        return self.path / file_name_for(message_id)

    def send(self, message: OutboundMessage) -> None:
        if not message.message_id.strip():
            raise InputError("an outgoing message has no Message-ID; it cannot be sent once only")
        target = self.path_for(message.message_id)
        if target.exists():
            log.debug("outbox: message already written, skipped")
            return
        try:
            data = message.to_email().as_bytes()
        except (ValueError, TypeError, UnicodeError) as exc:
            raise InputError(f"cannot build the e-mail {message.message_id}: {exc}") from exc
        try:
            write_atomic(target, data)
        except OSError as exc:
            raise TransientError(
                f"cannot write to the outbox folder {self.path}: {exc.strerror}; will retry"
            ) from exc

    def close(self) -> None:
        return None
