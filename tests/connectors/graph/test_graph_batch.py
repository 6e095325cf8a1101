"""JSON batching under the retry policy, against the emulator's $batch."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from connectors.base import OutboundMessage
from connectors.graph_batch import Reply, Sub
from connectors.graph_http import AmbiguousWrite, Call, GraphHttp, GraphNotFound
from connectors.graph_mail import GraphMailbox
from connectors.graph_workbook import GraphWorkbook
from service.errors import InputError
from tests.connectors.harness_graph import MAILBOX, GraphSetup, graph_config, graph_setup
from tests.connectors.test_mailbox_contract import make_raw
from tests.connectors.test_sender_contract import message


@pytest.fixture
def setup(tmp_path: Path, request: pytest.FixtureRequest) -> GraphSetup:
    return graph_setup(tmp_path, request)


def folder(name: str) -> Sub:
    return Sub("GET", f"users/{MAILBOX}/mailFolders/{name}", Call(what=f"read {name}"))


def client(setup: GraphSetup) -> GraphHttp:
    http = setup.mailbox().http
    http.ensure_token()  # as every backend does before its calls
    return http


def batches(setup: GraphSetup, since: int = 0) -> int:
    return sum(1 for r in setup.emu.round_trips[since:] if r.path.endswith("/$batch"))


def test_answers_come_back_in_the_order_asked(setup: GraphSetup) -> None:
    http = client(setup)

    out = http.batch([folder("inbox"), folder("drafts"), folder("sentitems")])

    assert all(isinstance(o, Reply) and o.status == 200 for o in out)
    assert [o.json()["displayName"] for o in out] == ["Inbox", "Drafts", "Sent Items"]
    assert batches(setup) == 1


def test_only_the_throttled_request_is_sent_again_after_its_own_retry_after(
    setup: GraphSetup,
) -> None:
    setup.emu.add_fault("GET", r"/mailFolders/drafts$", 429, headers={"Retry-After": "2.5"})
    http = client(setup)

    out = http.batch([folder("inbox"), folder("drafts")])

    assert [o.status for o in out if isinstance(o, Reply)] == [200, 200]
    assert setup.sleeps.waits == [2.5]
    assert setup.emu.count_requests("GET", r"/mailFolders/inbox$") == 1  # kept, not repeated
    assert setup.emu.count_requests("GET", r"/mailFolders/drafts$") == 2
    assert batches(setup) == 2


def test_a_504_inside_the_batch_repeats_a_read_but_not_an_unsafe_write(
    setup: GraphSetup,
) -> None:
    item = setup.emu.deliver(MAILBOX, make_raw("A", "B", message_id="<b1@example.org>"))
    setup.emu.add_fault("GET", r"/mailFolders/inbox$", 504)
    setup.emu.add_fault("POST", r"/move$", 504, after_commit=True)
    http = client(setup)
    move = Sub(
        "POST",
        f"users/{MAILBOX}/messages/{item}/move",
        Call(what="move"),
        json={"destinationId": "deleteditems"},
        retry_ambiguous=False,
    )

    read, moved = http.batch([folder("inbox"), move])

    assert isinstance(read, Reply) and read.status == 200
    assert isinstance(moved, AmbiguousWrite)
    assert setup.emu.count_requests("POST", r"/move$") == 1


def test_a_lost_batch_answer_repeats_the_reads_and_reports_the_writes_unclear(
    setup: GraphSetup,
) -> None:
    item = setup.emu.deliver(MAILBOX, make_raw("A", "B", message_id="<b2@example.org>"))
    setup.emu.add_fault("POST", r"/\$batch$", 0, after_commit=True)
    http = client(setup)
    move = Sub(
        "POST",
        f"users/{MAILBOX}/messages/{item}/move",
        Call(what="move"),
        json={"destinationId": "deleteditems"},
    )

    read, moved = http.batch([folder("inbox"), move])

    assert isinstance(read, Reply) and read.status == 200
    assert isinstance(moved, AmbiguousWrite)
    assert setup.emu.count_requests("POST", r"/move$") == 1  # not repeated blindly


def test_more_than_four_mailbox_requests_go_as_a_chain_in_one_round_trip(
    setup: GraphSetup,
) -> None:
    http = client(setup)

    out = http.batch([folder("inbox") for _ in range(12)])

    assert all(isinstance(o, Reply) and o.status == 200 for o in out)
    assert batches(setup) == 1
    assert setup.sleeps.waits == []  # no MailboxConcurrency 429 to wait out


def test_a_failure_in_a_chain_does_not_lose_the_requests_after_it(setup: GraphSetup) -> None:
    setup.emu.add_fault("GET", r"/mailFolders/drafts$", 404)
    http = client(setup)

    out = http.batch([folder("inbox"), folder("drafts"), *[folder("inbox") for _ in range(4)]])

    assert isinstance(out[1], GraphNotFound)
    assert [o.status for o in out if isinstance(o, Reply)] == [200] * 5  # 424s sent again


def test_more_than_twenty_go_in_several_batches(setup: GraphSetup) -> None:
    out = client(setup).batch([folder("inbox") for _ in range(25)])

    assert len(out) == 25 and all(isinstance(o, Reply) for o in out)
    assert batches(setup) == 2


def test_a_message_body_comes_back_as_its_bytes(setup: GraphSetup) -> None:
    raw = make_raw("Subject", "Body text", message_id="<b3@example.org>")
    item = setup.emu.deliver(MAILBOX, raw)

    (reply,) = client(setup).batch(
        [Sub("GET", f"users/{MAILBOX}/messages/{item}/$value", Call(what="read"))]
    )

    assert isinstance(reply, Reply) and reply.content == raw


def test_a_burst_is_read_in_batches_in_arrival_order(setup: GraphSetup) -> None:
    ids = [
        setup.emu.deliver(MAILBOX, make_raw(f"C{n}", "B", message_id=f"<burst{n}@example.org>"))
        for n in range(12)
    ]
    box = setup.mailbox()
    box.http.ensure_token()
    before = len(setup.emu.round_trips)

    items = list(box.fetch_new())

    assert [i.item_id for i in items] == ids
    assert all(b"Message-ID: <burst" in i.raw for i in items)
    # the delta page, then 12 messages in two batches (10 + 2): 3 round trips, not 13
    assert len(setup.emu.round_trips) - before == 3
    assert batches(setup) == 2


def test_a_message_deleted_before_its_batched_read_is_skipped(setup: GraphSetup) -> None:
    for n in range(3):
        setup.emu.deliver(MAILBOX, make_raw(f"C{n}", "B", message_id=f"<gone{n}@example.org>"))
    setup.emu.add_fault("GET", r"/messages/[^/]+/\$value$", 404)  # the first read: purged

    items = list(setup.mailbox().fetch_new())

    assert len(items) == 2


def test_a_throttled_batched_read_waits_its_retry_after_and_loses_nothing(
    setup: GraphSetup,
) -> None:
    for n in range(5):
        setup.emu.deliver(MAILBOX, make_raw(f"C{n}", "B", message_id=f"<slow{n}@example.org>"))
    setup.emu.add_fault("GET", r"/\$value$", 429, headers={"Retry-After": "1.5"}, times=2)

    items = list(setup.mailbox().fetch_new())

    assert len(items) == 5
    assert 1.5 in setup.sleeps.waits


def test_an_idle_cycle_of_mailbox_and_forms_workbook_is_one_round_trip(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    setup = graph_setup(tmp_path, request, site=True)
    setup.put_workbook({"Table1": (["ID", "Details"], [[1, "First response"]])})
    box, forms = setup.mailbox(), setup.workbook()

    def cycle() -> list[object]:
        box.http.ensure_token()
        list(box.fetch_new())
        return [r["ID"] for r in forms.read_table("Table1").rows]

    cycle()
    cycle()  # warm: the workbook has asked for its cTag to ride along
    before = len(setup.emu.round_trips)
    assert cycle() == [1]
    assert len(setup.emu.round_trips) - before == 1  # delta + cTag in one $batch

    setup.put_workbook({"Table1": (["ID", "Details"], [[1, "First"], [2, "Second"]])})
    assert cycle() == [1, 2]  # the new cTag came with the delta: the table is read again


def test_a_new_process_reads_the_forms_cTag_with_its_first_delta(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    setup = graph_setup(tmp_path, request, site=True)
    setup.put_workbook({"Table1": (["ID", "Details"], [[1, "First response"]])})

    def cycle(box: GraphMailbox, forms: GraphWorkbook) -> list[object]:
        box.http.ensure_token()
        list(box.fetch_new())
        return [r["ID"] for r in forms.read_table("Table1").rows]

    box, forms = setup.mailbox(), setup.workbook()
    for _ in range(3):
        cycle(box, forms)
    # A new process: a config loaded again (its own token and memory), the same ledger.
    fresh = GraphSetup(setup.emu, graph_config(setup.emu, tmp_path), setup.ledger)
    box, forms = fresh.mailbox(), fresh.workbook()
    box.http.ensure_token()
    before = len(setup.emu.round_trips)

    assert cycle(box, forms) == [1]

    # delta + cTag in one $batch, then the table (range + Total Row check) in another
    assert len(setup.emu.round_trips) - before == 2
    assert batches(setup, since=before) == 2


def alert(n: int) -> OutboundMessage:
    return replace(message(), message_id=f"<alert.{n:04d}@example.org>")


def test_several_alerts_go_with_their_sends_batched_and_each_once(setup: GraphSetup) -> None:
    sender = setup.sender()
    sender.http.ensure_token()

    outcomes = list(sender.send_many([alert(n) for n in range(9)]))
    again = list(sender.send_many([alert(n) for n in range(9)]))  # a retry sends nothing

    assert outcomes == again == [None] * 9
    sent = [m.message()["Message-ID"] for m in setup.emu.outbox(MAILBOX)]
    assert sorted(sent) == [f"<alert.{n:04d}@example.org>" for n in range(9)]
    assert setup.emu.folder_messages(MAILBOX, "drafts") == []
    assert setup.emu.count_requests("POST", r"/messages/[^/]+/send$") == 9
    # groups of four: 4 + 4 sends in two batches; the last one alone, as a plain request
    assert batches(setup) == 2
    last_send = [r for r in setup.emu.round_trips if r.path.endswith("/send")]
    assert len(last_send) == 1


def test_a_batched_send_without_a_clear_answer_is_read_back_not_repeated(
    setup: GraphSetup,
) -> None:
    setup.emu.add_fault("POST", r"/messages/[^/]+/send$", 504, after_commit=True)
    sender = setup.sender()

    assert list(sender.send_many([alert(n) for n in range(3)])) == [None] * 3

    sent = [m.message()["Message-ID"] for m in setup.emu.outbox(MAILBOX)]
    assert sorted(sent) == [f"<alert.{n:04d}@example.org>" for n in range(3)]  # none twice


def test_a_lone_send_goes_plain_and_an_unclear_answer_is_still_read_back(
    setup: GraphSetup,
) -> None:
    setup.emu.add_fault("POST", r"/messages/[^/]+/send$", 504, after_commit=True)
    sender = setup.sender()

    assert list(sender.send_many([alert(0)])) == [None]
    assert list(sender.send_many([alert(0)])) == [None]  # a retry sends nothing

    assert [m.message()["Message-ID"] for m in setup.emu.outbox(MAILBOX)] == [
        "<alert.0000@example.org>"
    ]
    assert batches(setup) == 0
    assert setup.emu.count_requests("POST", r"/messages/[^/]+/send$") == 1


def test_a_throttled_batched_send_waits_and_goes_once(setup: GraphSetup) -> None:
    setup.emu.add_fault("POST", r"/messages/[^/]+/send$", 429, headers={"Retry-After": "2"})
    sender = setup.sender()

    assert list(sender.send_many([alert(n) for n in range(3)])) == [None] * 3

    assert len(setup.emu.outbox(MAILBOX)) == 3
    assert 2.0 in setup.sleeps.waits


def test_several_moves_go_batched_and_a_purged_one_is_named(
    setup: GraphSetup,
) -> None:
    ids = [
        setup.emu.deliver(MAILBOX, make_raw(f"C{n}", "B", message_id=f"<mv{n}@example.org>"))
        for n in range(6)
    ]
    box = setup.mailbox()
    box.http.request(
        "POST", f"users/{MAILBOX}/messages/{ids[2]}/permanentDelete", Call(what="a person")
    )
    box.http.ensure_token()
    before = batches(setup)

    out = box.mark_processed_many(ids)

    assert [out[i] is None for i in ids] == [True, True, False, True, True, True]
    assert isinstance(out[ids[2]], InputError)
    assert len(setup.emu.folder_messages(MAILBOX, "Processed")) == 5
    # six moves go as one dependsOn chain; it stops at the purged one (404), whose followers
    # answer 424 and go again in a second batch
    assert batches(setup) == before + 2


def test_a_changed_table_is_read_with_its_total_row_check_in_one_round_trip(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    setup = graph_setup(tmp_path, request, site=True)
    setup.put_workbook({"Table1": (["ID", "Details"], [[1, "First response"]])})
    book = setup.workbook()
    book.item()
    book.http.ensure_token()
    before = len(setup.emu.round_trips)

    assert [r["ID"] for r in book.read_table("Table1").rows] == [1]

    assert len(setup.emu.round_trips) - before == 2  # the cTag, then range + showTotals
    assert setup.emu.count_requests("GET", r"/tables/Table1/range$") == 1
