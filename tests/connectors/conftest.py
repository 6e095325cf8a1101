"""Registries of contract-test harnesses: backend name → "module:function".

Add one line per backend. The factory is imported only when its parameter runs, so a backend
whose module is missing or broken fails its own tests and nobody else's. ``HARNESS_MARKS`` adds
marks to a backend's parameter (e.g. ``"imap": (pytest.mark.servers,)``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

MAILBOX_HARNESSES: dict[str, str] = {
    "memory": "tests.connectors.harness:memory_mailbox",
    "folder": "tests.connectors.harness:folder_mailbox",
    "graph": "tests.connectors.harness_graph:graph_mailbox",
    "imap": "tests.connectors.harness_imap:imap_mailbox",
    "imap-nomove": "tests.connectors.harness_imap:imap_nomove_mailbox",
}

SENDER_HARNESSES: dict[str, str] = {
    "memory": "tests.connectors.harness:memory_sender",
    "outbox": "tests.connectors.harness:outbox_sender",
    "graph": "tests.connectors.harness_graph:graph_sender",
    "smtp": "tests.connectors.harness_smtp:smtp_sender",
}

WORKBOOK_HARNESSES: dict[str, str] = {
    "memory": "tests.connectors.harness:memory_workbook",
    "xlsx": "tests.connectors.harness:xlsx_workbook",
    "graph": "tests.connectors.harness_graph:graph_workbook",
    "graph-file": "tests.connectors.harness_graph:graph_file_workbook",
}

HARNESS_MARKS: dict[str, tuple[pytest.MarkDecorator, ...]] = {
    "imap": (pytest.mark.servers,),
    "imap-nomove": (pytest.mark.servers,),
    "smtp": (pytest.mark.servers,),
}


def _params(registry: dict[str, str]) -> list[Any]:
    return [pytest.param(name, marks=HARNESS_MARKS.get(name, ()), id=name) for name in registry]


def _factory(target: str) -> Callable[[Path, pytest.FixtureRequest], Any]:
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)  # type: ignore[no-any-return]


def _harness(registry: dict[str, str], request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    return _factory(registry[request.param])(tmp_path, request)


@pytest.fixture(params=_params(MAILBOX_HARNESSES))
def mailbox_harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    harness = _harness(MAILBOX_HARNESSES, request, tmp_path)
    yield harness
    harness.close()


@pytest.fixture(params=_params(SENDER_HARNESSES))
def sender_harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    harness = _harness(SENDER_HARNESSES, request, tmp_path)
    yield harness
    harness.close()


@pytest.fixture(params=_params(WORKBOOK_HARNESSES))
def workbook_harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    harness = _harness(WORKBOOK_HARNESSES, request, tmp_path)
    yield harness
    harness.close()
