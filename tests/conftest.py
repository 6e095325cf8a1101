"""Shared fixtures: a config for local backends, an App on in-memory ones, a frozen clock."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from service.app import App
from service.config import Config, parse_config

pytest_plugins = ["tests.servers", "tests.graph_emulator.fixtures"]

# Property tests explore new inputs on every developer run; CI (HYPOTHESIS_PROFILE=ci, set by
# .ci/run) replays a fixed set so that a landing never depends on the luck of the draw. A failure
# prints the example and a blob to reproduce it with @reproduce_failure.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

BASE_CONFIG: dict[str, Any] = {
    "organisation": {"name": "Example Training Ltd", "reference_prefix": "PRV"},
    "people": {
        "dsp": {"name": "Alex Morgan", "email": "dsp@example.org"},
        "deputy_dsp": {"name": "Sam Patel", "email": "deputy.dsp@example.org"},
        "admin_email": "it-admin@example.org",
    },
    "roles": {
        "Executive Director": ["executive.director@example.org"],
        "Operations Director": ["operations.director@example.org"],
        "Training Managers": ["training.manager@example.org"],
    },
    "areas": {
        "Warwickshire": {
            "aliases": ["Leamington"],
            "contacts": [{"name": "Prevent Officer", "phone": "01000 000001"}],
        },
        "Coventry": {"contacts": [{"name": "Coventry Prevent Officer"}]},
    },
    "intake": {
        "address": "safeguarding@example.org",
        "mailbox": {"backend": "memory"},
        "forms": {"workbook": {"backend": "memory"}, "table": "Table1"},
    },
    "register": {"workbook": {"backend": "memory"}, "table": "Concerns"},
    "sending": {"sender": {"backend": "memory"}},
    "compliance": {"workbook": {"backend": "memory"}},
}


def merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``base`` with ``changes`` merged in (None deletes a key)."""
    result = dict(base)
    for key, value in changes.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value)
        else:
            result[key] = value
    return result


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., Config]:
    def make(changes: dict[str, Any] | None = None, **sections: Any) -> Config:
        data = merge(BASE_CONFIG, {"state": {"path": str(tmp_path / "state")}})
        data = merge(data, changes or {})
        data = merge(data, sections)
        return parse_config(data, source=tmp_path / "config.toml")

    return make


class Clock:
    """A clock that only moves when a test moves it."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        from datetime import timedelta

        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 11, 24, 9, 30, tzinfo=UTC))


def make_memory_app(config: Config, clock: Clock, *, forms_table: bool = True) -> App:
    """An App on in-memory backends with an empty register (and, unless ``forms_table`` is
    False, an empty forms table; else a forms workbook without one)."""
    from connectors.memory import MemoryMailbox, MemorySender, MemoryWorkbook
    from service.cases.register import register_table_spec
    from service.intake.forms import forms_table_spec

    register_wb = MemoryWorkbook()
    spec = register_table_spec()
    register_wb.add_table(spec.table, [c.header for c in spec.columns], [])
    forms_wb = MemoryWorkbook()
    if forms_table:
        fspec = forms_table_spec()
        forms_wb.add_table(fspec.table, [c.header for c in fspec.columns], [])
    return App(
        config,
        now=clock,
        mailbox=MemoryMailbox(),
        sender=MemorySender(),
        workbooks={"register": register_wb, "forms": forms_wb},
    )


@pytest.fixture
def memory_app(make_config: Callable[..., Config], clock: Clock) -> Iterator[App]:
    """An App on in-memory backends with an empty register and forms table."""
    app = make_memory_app(make_config(), clock)
    yield app
    app.close()


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The common default umask (files 0644): what the service creates must still be private."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)
