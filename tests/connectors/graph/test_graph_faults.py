"""The one retry policy under injected faults: throttling (integer, fractional and date
``Retry-After``) on reads and writes, 5xx, dropped connections, the wait budget, and the
translation of Graph's error bodies."""

from __future__ import annotations

import email.utils
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from connectors.graph_http import (
    Call,
    GraphFailure,
    SyncStateLost,
    parse_failure,
    parse_retry_after,
    translate,
)
from service.errors import LockedError, PermanentError, TransientError
from tests.connectors.harness_graph import (
    MAILBOX,
    GraphSetup,
    graph_config,
    graph_setup,
    m365_section,
)
from tests.connectors.test_mailbox_contract import make_raw


@pytest.fixture
def setup(tmp_path: Path, request: pytest.FixtureRequest) -> GraphSetup:
    return graph_setup(tmp_path, request)


def one_message(setup: GraphSetup) -> str:
    return str(
        setup.emu.deliver(MAILBOX, make_raw("Concern", "Text", message_id="<f1@example.org>"))
    )


# ---------------------------------------------------------------------------- Retry-After


@pytest.mark.parametrize(
    ("value", "expected"),
    [("10", 10.0), ("2.128", 2.128), (" 0 ", 0.0), ("-3", 0.0), ("soon", None), ("", None)],
)
def test_retry_after_seconds(value: str, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_retry_after_http_date() -> None:
    now = datetime(2026, 2, 2, 9, 30, tzinfo=UTC)
    later = email.utils.format_datetime(now + timedelta(seconds=7), usegmt=True)

    assert parse_retry_after(later, now=now) == 7.0
    assert parse_retry_after("Mon, 02 Feb 2026 09:00:00 GMT", now=now) == 0.0


@pytest.mark.parametrize("retry_after", ["1", "2.128"])
def test_throttled_delta_read_waits_as_told_then_carries_on(
    setup: GraphSetup, retry_after: str
) -> None:
    one_message(setup)
    setup.emu.add_fault("GET", r"/messages/delta", 429, headers={"Retry-After": retry_after})

    items = list(setup.mailbox().fetch_new())

    assert len(items) == 1
    assert setup.sleeps.waits == [float(retry_after)]


@pytest.mark.parametrize("retry_after", ["1", "2.128"])
def test_throttled_post_is_repeated_because_nothing_happened(
    setup: GraphSetup, retry_after: str
) -> None:
    # O365's own urllib3 retry never repeats a POST and raises on "2.128"; ours does both.
    item_id = one_message(setup)
    setup.emu.add_fault("POST", r"/move$", 429, headers={"Retry-After": retry_after}, times=2)

    setup.mailbox().mark_processed(item_id)

    assert setup.sleeps.waits == [float(retry_after)] * 2
    assert len(setup.emu.folder_messages(MAILBOX, "Processed")) == 1


def test_throttled_send_is_repeated_and_goes_once(setup: GraphSetup) -> None:
    from tests.connectors.test_sender_contract import message

    setup.emu.add_fault("POST", r"/send$", 429, headers={"Retry-After": "2.128"})

    setup.sender().send(message())

    assert setup.sleeps.waits == [2.128]
    assert len(setup.emu.outbox(MAILBOX)) == 1


def test_a_retry_after_date_is_honoured(setup: GraphSetup) -> None:
    one_message(setup)
    when = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=20), usegmt=True)
    setup.emu.add_fault("GET", r"/messages/delta", 503, headers={"Retry-After": when})

    assert len(list(setup.mailbox().fetch_new())) == 1
    (wait,) = setup.sleeps.waits
    assert 15 <= wait <= 20


@pytest.mark.parametrize("status", [500, 502, 503, 504, 0])
def test_server_errors_and_dropped_connections_on_reads_back_off(
    setup: GraphSetup, status: int
) -> None:
    one_message(setup)
    setup.emu.add_fault("GET", r"/\$value$", status, times=2)

    (item,) = list(setup.mailbox().fetch_new())

    assert item.raw.startswith(b"From:")
    first, second = setup.sleeps.waits
    assert 0.5 <= first <= 1.0  # 1 s with jitter
    assert 1.0 <= second <= 2.0  # then 2 s with jitter


def test_waiting_stops_at_the_budget_with_a_retry_hint(setup: GraphSetup) -> None:
    one_message(setup)
    setup.emu.add_fault("GET", r"/messages/delta", 429, headers={"Retry-After": "120"})

    with pytest.raises(TransientError) as info:
        list(setup.mailbox().fetch_new())

    assert setup.sleeps.waits == []  # 120 s is over the 30 s budget: the caller parks instead
    assert info.value.retry_after == 120.0
    assert "busy or unavailable" in str(info.value)


def test_repeated_5xx_gives_up_within_the_budget(setup: GraphSetup) -> None:
    one_message(setup)
    setup.emu.add_fault("GET", r"/messages/delta", 503, times=50)

    with pytest.raises(TransientError):
        list(setup.mailbox().fetch_new())

    assert sum(setup.sleeps.waits) <= 30


def test_a_single_401_renews_the_token_and_repeats_the_call(setup: GraphSetup) -> None:
    item_id = one_message(setup)
    box = setup.mailbox()
    box.http.ensure_token()
    setup.emu.add_fault("POST", r"/move$", 401)

    box.mark_processed(item_id)

    assert len(setup.emu.folder_messages(MAILBOX, "Processed")) == 1
    assert setup.emu.count_requests("POST", r"/oauth2/v2\.0/token") == 2


def test_an_unclear_move_is_repeated_and_lands_once(setup: GraphSetup) -> None:
    item_id = one_message(setup)
    setup.emu.add_fault("POST", r"/move$", 504, after_commit=True)

    setup.mailbox().mark_processed(item_id)

    assert [m["id"] for m in setup.emu.folder_messages(MAILBOX, "Processed")] == [item_id]


def test_a_timeout_is_retried(setup: GraphSetup, tmp_path: Path) -> None:
    one_message(setup)
    quick = GraphSetup(
        setup.emu,
        graph_config(setup.emu, tmp_path, m365=m365_section(setup.emu, timeout_seconds=0.5)),
        setup.ledger,
        setup.sleeps,
    )
    setup.emu.add_fault("GET", r"/\$value$", 200, delay=1.5)

    (item,) = list(quick.mailbox().fetch_new())

    assert item.raw.startswith(b"From:")
    assert len(setup.sleeps.waits) == 1


# ---------------------------------------------------------------------------- translation


def failure(
    status: int, body: dict[str, Any] | None, headers: dict[str, str] | None = None
) -> GraphFailure:
    response = requests.Response()
    response.status_code = status
    response.headers.update(headers or {})
    response._content = b"" if body is None else json.dumps(body).encode()
    return parse_failure(response)


CALL = Call(what="add a row", permission="Sites.Selected", kind="workbook", subject="register")


@pytest.mark.parametrize(
    "body",
    [
        {"error": {"code": "resourceLocked", "message": "The resource is locked"}},
        {"error": {"code": "notAllowed", "innerError": {"code": "resourceLocked"}}},
        {"error": {"code": "conflict", "innerError": {"code": "accessConflict"}}},
        {
            "error": {
                "code": "conflict",
                "innerError": {"innerError": {"code": "invalidSessionAccessConflict"}},
            }
        },
        {
            "error": {
                "code": "EditModeCannotAcquireLock",
                "message": "A person is editing this workbook.",
            }
        },
    ],
)
def test_every_lock_spelling_is_a_locked_error(body: dict[str, Any]) -> None:
    error = translate(failure(409, body), CALL)

    assert isinstance(error, LockedError)
    assert "stays pending" in str(error)


def test_423_is_locked_whatever_the_body() -> None:
    assert isinstance(translate(failure(423, None), CALL), LockedError)


def test_410_is_a_lost_sync_state() -> None:
    body = {"error": {"code": "syncStateNotFound", "innerError": {"code": "SyncStateNotFound"}}}

    assert isinstance(translate(failure(410, body), CALL), SyncStateLost)


def test_403_on_the_workbook_api_says_to_use_file_mode() -> None:
    error = translate(failure(403, {"error": {"code": "accessDenied"}}), CALL)

    assert isinstance(error, PermanentError)
    assert 'mode = "file"' in str(error)


def test_403_on_a_file_names_the_site_grant() -> None:
    call = Call(what="find the file", permission="Sites.Selected", kind="file")

    error = translate(failure(403, {"error": {"code": "accessDenied"}}), call)

    assert "POST /sites/{site-id}/permissions" in str(error)
    assert '"roles": ["write"]' in str(error)


def test_a_graph_message_is_shortened_and_kept_on_one_line() -> None:
    parsed = failure(400, {"error": {"code": "BadRequest", "message": "line one\nline two " * 40}})

    assert "\n" not in parsed.message
    assert len(parsed.message) <= 200
