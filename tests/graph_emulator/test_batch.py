"""The emulator's JSON batching, through plain requests and a real msal token."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import requests

from tests.graph_emulator import GraphEmulator
from tests.graph_emulator.test_emulator import (
    CLIENT_ID,
    IMMUTABLE,
    MAILBOX,
    SECRET,
    Client,
    make_mime,
    token_for,
)


@pytest.fixture(autouse=True)
def _no_ca_bundle_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


@pytest.fixture
def api(graph: GraphEmulator) -> Client:
    graph.add_app(CLIENT_ID, secret=SECRET)
    graph.add_mailbox(MAILBOX)
    return Client(graph, token_for(graph))


def batch(api: Client, requests_: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    response = api.post("/$batch", json={"requests": requests_})
    assert response.status_code == 200, response.text
    return {r["id"]: r for r in response.json()["responses"]}


def test_each_request_has_its_own_status_and_non_json_bodies_are_base64(
    api: Client, graph: GraphEmulator
) -> None:
    raw = make_mime("Batch one")
    item = graph.deliver(MAILBOX, raw)
    gone = graph.deliver(MAILBOX, make_mime("Purged"))
    api.post(f"/users/{MAILBOX}/messages/{gone}/permanentDelete", headers=IMMUTABLE)

    out = batch(
        api,
        [
            {
                "id": "1",
                "method": "GET",
                "url": f"/users/{MAILBOX}/messages/{item}/$value",
                "headers": IMMUTABLE,
            },
            {
                "id": "2",
                "method": "GET",
                "url": f"/users/{MAILBOX}/messages/{gone}",
                "headers": IMMUTABLE,
            },
        ],
    )

    assert out["1"]["status"] == 200
    assert base64.b64decode(out["1"]["body"]) == raw
    assert out["2"]["status"] == 404
    assert out["2"]["body"]["error"]["code"] == "ErrorItemNotFound"


def test_responses_come_back_in_another_order(api: Client) -> None:
    response = api.post(
        "/$batch",
        json={
            "requests": [
                {"id": str(n), "method": "GET", "url": f"/users/{MAILBOX}/mailFolders/inbox"}
                for n in range(1, 4)
            ]
        },
    )
    assert [r["id"] for r in response.json()["responses"]] != ["1", "2", "3"]


def test_a_failed_dependency_is_424_and_not_run(api: Client, graph: GraphEmulator) -> None:
    item = graph.deliver(MAILBOX, make_mime("Batch two"))

    out = batch(
        api,
        [
            {"id": "a", "method": "GET", "url": f"/users/{MAILBOX}/mailFolders/NoSuchFolder"},
            {
                "id": "b",
                "method": "POST",
                "url": f"/users/{MAILBOX}/messages/{item}/move",
                "dependsOn": ["a"],
                "headers": {"Content-Type": "application/json"},
                "body": {"destinationId": "deleteditems"},
            },
        ],
    )

    assert out["b"]["status"] == 424
    assert len(graph.folder_messages(MAILBOX, "inbox")) == 1  # the move never ran


def test_a_throttled_request_has_its_own_retry_after_while_others_succeed(
    api: Client, graph: GraphEmulator
) -> None:
    graph.add_fault("GET", r"/mailFolders/inbox$", 429, headers={"Retry-After": "3"})

    out = batch(
        api,
        [
            {"id": "1", "method": "GET", "url": f"/users/{MAILBOX}/mailFolders/inbox"},
            {"id": "2", "method": "GET", "url": f"/users/{MAILBOX}/mailFolders/drafts"},
        ],
    )

    assert out["1"]["status"] == 429 and out["1"]["headers"]["Retry-After"] == "3"
    assert out["2"]["status"] == 200


def test_more_than_four_parallel_mailbox_requests_are_throttled_but_a_chain_is_not(
    api: Client,
) -> None:
    url = f"/users/{MAILBOX}/mailFolders/inbox"
    parallel = batch(api, [{"id": str(n), "method": "GET", "url": url} for n in range(6)])
    chained = batch(
        api,
        [
            {
                "id": str(n),
                "method": "GET",
                "url": url,
                **({"dependsOn": [str(n - 1)]} if n else {}),
            }
            for n in range(6)
        ],
    )

    assert sorted(r["status"] for r in parallel.values()) == [200] * 4 + [429] * 2
    throttled = [r for r in parallel.values() if r["status"] == 429]
    assert all("Retry-After" in r["headers"] for r in throttled)
    assert "MailboxConcurrency" in throttled[0]["body"]["error"]["message"]
    assert [r["status"] for r in chained.values()] == [200] * 6


@pytest.mark.parametrize(
    "payload",
    [
        {"requests": [{"id": str(n), "method": "GET", "url": "/users"} for n in range(21)]},
        {
            "requests": [
                {"id": "x", "method": "GET", "url": "/a"},
                {"id": "X", "method": "GET", "url": "/b"},
            ]
        },
        {
            "requests": [
                {"id": "1", "method": "GET", "url": "/a", "dependsOn": ["2"]},
                {"id": "2", "method": "GET", "url": "/b"},
            ]
        },
    ],
    ids=["21-requests", "duplicate-id", "depends-on-later"],
)
def test_a_malformed_batch_is_400(api: Client, payload: dict[str, Any]) -> None:
    assert api.post("/$batch", json=payload).status_code == 400


def test_a_body_needs_a_content_type(api: Client, graph: GraphEmulator) -> None:
    item = graph.deliver(MAILBOX, make_mime("Batch three"))
    out = batch(
        api,
        [
            {
                "id": "1",
                "method": "POST",
                "url": f"/users/{MAILBOX}/messages/{item}/move",
                "body": {"destinationId": "deleteditems"},
            }
        ],
    )
    assert out["1"]["status"] == 400


def test_the_log_counts_round_trips_and_the_requests_inside(
    api: Client, graph: GraphEmulator
) -> None:
    before_trips, before_all = len(graph.round_trips), len(graph.requests)

    batch(
        api,
        [
            {"id": str(n), "method": "GET", "url": f"/users/{MAILBOX}/mailFolders/inbox"}
            for n in range(3)
        ],
    )

    assert len(graph.round_trips) == before_trips + 1
    assert len(graph.requests) == before_all + 4
    assert graph.count_requests("GET", r"/mailFolders/inbox$") == 3


def test_a_dropped_answer_inside_a_batch_drops_the_whole_batch(
    api: Client, graph: GraphEmulator
) -> None:
    graph.add_fault("GET", r"/mailFolders/inbox$", 0)
    with pytest.raises(requests.ConnectionError):
        api.post(
            "/$batch",
            json={
                "requests": [
                    {"id": "1", "method": "GET", "url": f"/users/{MAILBOX}/mailFolders/inbox"}
                ]
            },
        )


def test_the_outer_token_authorises_every_request(graph: GraphEmulator, api: Client) -> None:
    anonymous = requests.post(
        f"{graph.url}/v1.0/$batch",
        json={"requests": [{"id": "1", "method": "GET", "url": f"/users/{MAILBOX}/mailFolders"}]},
        verify=graph.ca_path,
        timeout=10,
    )
    assert anonymous.status_code == 401
