"""The project's one exception tree.

    PreventServiceError            root: anything this project raises on purpose
    ├── ConfigError                the config file is wrong; names the key path
    ├── InputError                 a source item or workbook cannot be read; names file/row/message
    └── ConnectorError             a backend failed
        ├── TransientError         try again later (lock, throttling, timeout, 5xx); has retry_after
        │   └── LockedError        a workbook is open or locked by someone else
        └── PermanentError         a person has to act (permission, missing file, expired secret)

Backends translate their libraries' errors into these at the boundary (``raise … from exc``).
Messages say what failed and what to do, and never carry concern text, names or secrets.
"""

from __future__ import annotations


class PreventServiceError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigError(PreventServiceError):
    """The configuration is invalid. ``str()`` starts with the key path."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        self.key = key
        super().__init__(f"{key}: {message}" if key else message)


class InputError(PreventServiceError):
    """A source item or a workbook cannot be understood; the item is quarantined, not lost."""


class ConnectorError(PreventServiceError):
    """A backend (mailbox, sender, workbook) failed."""


class TransientError(ConnectorError):
    """Worth retrying later; ``retry_after`` is the server's hint in seconds, if it gave one."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class LockedError(TransientError):
    """The workbook is open in Excel or locked by another writer; the row stays pending."""


class PermanentError(ConnectorError):
    """Retrying will not help until a person fixes something; the message says what."""
