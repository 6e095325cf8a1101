"""``status`` names mail drafted in the shared mailbox but not known to be sent (issue 9.11)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from service.admin.status import status_report
from service.app import App
from tests.connectors.harness_graph import MAILBOX, graph_setup


@pytest.mark.parametrize("state", ["planned:2026-01-01T00:00:00+00:00", "draft:AAMkAGI2"])
def test_status_lists_a_draft_older_than_ten_minutes_and_is_unhealthy(
    tmp_path: Path, request: pytest.FixtureRequest, state: str
) -> None:
    setup = graph_setup(tmp_path, request)
    setup.ledger.set(f"graph.send:{MAILBOX}:<alert.abc@example.org>", state)
    setup.ledger.set(f"graph.send:{MAILBOX}:<ack.def@example.org>", "sent:2026-01-01T00:00")
    now = datetime.now(UTC)

    fresh = status_report(App(setup.config, ledger=setup.ledger, now=lambda: now))
    later = now + timedelta(minutes=11)
    healthy, lines = status_report(App(setup.config, ledger=setup.ledger, now=lambda: later))

    assert not any("drafted in" in line for line in fresh[1])
    text = "\n".join(lines)
    assert f"1 message(s) drafted in {MAILBOX}" in text
    assert "<alert.abc@example.org>" in text and "<ack.def@example.org>" not in text
    assert healthy is False
