"""Backends, by kind and by the config's ``backend`` key.

An explicit registry (no folder scanning): adding a backend is one module plus one line here.
Values are ``"module:Class"`` so that a backend's libraries load only when it is used. Each
class has ``from_config(section, config)`` taking its config section and the whole config.
"""

from __future__ import annotations

import importlib
from typing import Any

MAILBOXES: dict[str, str] = {
    "memory": "connectors.memory:MemoryMailbox",
    "folder": "connectors.folder:FolderMailbox",
    "imap": "connectors.imap:ImapMailbox",
    "graph": "connectors.graph_mail:GraphMailbox",
}

SENDERS: dict[str, str] = {
    "memory": "connectors.memory:MemorySender",
    "outbox": "connectors.outbox:OutboxSender",
    "smtp": "connectors.smtp:SmtpSender",
    "graph": "connectors.graph_mail:GraphSender",
}

WORKBOOKS: dict[str, str] = {
    "memory": "connectors.memory:MemoryWorkbook",
    "xlsx": "connectors.xlsx:XlsxWorkbook",
    "graph": "connectors.graph_workbook:GraphWorkbook",
}


def backend_class(registry: dict[str, str], name: str) -> Any:
    try:
        target = registry[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; known: {', '.join(registry)}") from None
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)
