"""GraphMailbox and GraphSender against the emulator: delta paging and cursor safety, resync,
folder moves, and sends that happen exactly once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connectors.graph_http import Call
from connectors.graph_mail import GraphSender
from service.errors import ConnectorError, InputError, PermanentError, TransientError
from tests.connectors.harness_graph import (
    CLIENT_ID,
    MAILBOX,
    SECRET,
    GraphSetup,
    graph_config,
    graph_setup,
)
from tests.connectors.test_mailbox_contract import make_raw
from tests.connectors.test_sender_contract import message


@pytest.fixture
def setup(tmp_path: Path, request: pytest.FixtureRequest) -> GraphSetup:
    return graph_setup(tmp_path, request)


def deliver(setup: GraphSetup, count: int, tag: str = "m") -> list[str]:
    return [
        setup.emu.deliver(
            MAILBOX, make_raw(f"Concern {n}", f"Body {n}", message_id=f"<{tag}{n}@example.org>")
        )
        for n in range(count)
    ]


def delta_calls(setup: GraphSetup) -> int:
    return setup.emu.count_requests("GET", r"/messages/delta")


# ---------------------------------------------------------------------------- reading


def test_items_carry_the_mime_time_link_and_immutable_id(setup: GraphSetup) -> None:
    raw = make_raw("Concern", "A worrying remark.", message_id="<i1@example.org>")
    immutable_id = setup.emu.deliver(MAILBOX, raw)

    (item,) = list(setup.mailbox().fetch_new())

    assert item.item_id == immutable_id
    assert item.raw == raw
    assert item.received_at is not None and item.received_at.tzinfo is not None
    assert item.web_link and item.web_link.startswith("https://")
    (first,) = [r for r in setup.emu.requests if r.path.endswith("/messages/delta")][:1]
    assert "odata.maxpagesize=50" in first.headers.get("Prefer", "")
    assert set(first.query["$select"].split(",")) == {"id", "receivedDateTime", "webLink"}


def test_pages_are_followed_and_the_cursor_saved_only_after_each_page(
    setup: GraphSetup,
) -> None:
    ids = deliver(setup, 5)
    box = setup.mailbox()
    box.page_size = 2
    seen: list[str] = []

    stream = box.fetch_new()
    for item in stream:
        seen.append(item.item_id)
        if len(seen) == 3:  # the worker dies halfway through page two
            break
    stream.close()
    cursor_after_crash = setup.ledger.get(box.cursor_key)

    restarted = setup.mailbox()
    restarted.page_size = 2
    again = [item.item_id for item in restarted.fetch_new()]

    assert cursor_after_crash is not None and "$skiptoken" in cursor_after_crash
    # Page two is replayed (ids 3 and 4), then page three; nothing is skipped.
    assert again == seen[2:] + [i for i in ids if i not in seen]
    assert sorted(seen + again[1:]) == sorted(ids)
    assert "$deltatoken" in (setup.ledger.get(box.cursor_key) or "")


def test_a_crash_inside_the_first_page_replays_it(setup: GraphSetup) -> None:
    ids = deliver(setup, 3)
    box = setup.mailbox()

    stream = box.fetch_new()
    next(stream)
    stream.close()

    assert setup.ledger.get(box.cursor_key) is None
    assert sorted(item.item_id for item in box.fetch_new()) == sorted(ids)


def test_an_idle_poll_is_one_request(setup: GraphSetup) -> None:
    deliver(setup, 2)
    box = setup.mailbox()
    list(box.fetch_new())
    before = len(setup.emu.requests)

    assert list(box.fetch_new()) == []

    idle = setup.emu.requests[before:]
    assert [(r.method, r.path.rsplit("/", 1)[-1]) for r in idle] == [("GET", "delta")]


def test_a_lost_delta_link_resyncs_without_duplicates_in_the_ledger(setup: GraphSetup) -> None:
    first = deliver(setup, 3, "a")
    box = setup.mailbox()
    claimed = [setup.ledger.claim_item(f"mail:{i.item_id}", "mail", None) for i in box.fetch_new()]
    setup.emu.lose_delta_tokens()
    later = deliver(setup, 1, "b")

    replay = list(box.fetch_new())
    claimed_again = [setup.ledger.claim_item(f"mail:{i.item_id}", "mail", None) for i in replay]

    assert claimed == [True, True, True]
    assert sorted(i.item_id for i in replay) == sorted(first + later)  # a full re-read …
    assert claimed_again.count(True) == 1  # … that the ledger de-duplicates
    assert setup.emu.count_requests("GET", r"/messages/delta") >= 3
    assert list(box.fetch_new()) == []


def test_the_read_flag_is_never_used(setup: GraphSetup) -> None:
    (immutable_id,) = deliver(setup, 1)
    box = setup.mailbox()
    # A person opens the message in the shared mailbox before the service polls.
    box.http.request(
        "PATCH",
        f"users/{MAILBOX}/messages/{immutable_id}",
        Call(what="mark read (a person, in the test)"),
        json={"isRead": True},
    )

    assert [item.item_id for item in box.fetch_new()] == [immutable_id]
    assert not any("isread" in str(r.query).lower() for r in setup.emu.requests)


def test_moved_items_are_not_offered_again(setup: GraphSetup) -> None:
    ids = deliver(setup, 2)
    box = setup.mailbox()
    list(box.fetch_new())

    box.mark_processed(ids[0])
    box.quarantine(ids[1], "unreadable")

    assert list(box.fetch_new()) == []
    assert [m["id"] for m in setup.emu.folder_messages(MAILBOX, "Processed")] == [ids[0]]
    assert [m["id"] for m in setup.emu.folder_messages(MAILBOX, "Quarantine")] == [ids[1]]


def test_folders_are_created_once_then_found_by_cache(setup: GraphSetup) -> None:
    ids = deliver(setup, 3)
    box = setup.mailbox()

    for item_id in ids:
        box.mark_processed(item_id)

    assert setup.emu.count_requests("POST", r"/mailFolders$") == 1
    assert setup.emu.count_requests("GET", r"/mailFolders$") == 1
    assert setup.emu.count_requests("POST", r"/move$") == 3


def test_a_folder_a_person_made_in_other_letter_case_is_used(setup: GraphSetup) -> None:
    # Exchange folder names are unique regardless of case: "processed" blocks "Processed".
    setup.emu.add_folder(MAILBOX, "processed")
    (item_id,) = deliver(setup, 1)

    setup.mailbox().mark_processed(item_id)

    assert [m["id"] for m in setup.emu.folder_messages(MAILBOX, "processed")] == [item_id]


def test_a_processed_folder_a_person_deleted_is_made_again(setup: GraphSetup) -> None:
    # The worker (``run``) keeps one mailbox object for days. Deleting a folder in Outlook
    # moves it (id and all) under Deleted Items, where moves into it still succeed.
    (first,) = deliver(setup, 1)
    box = setup.mailbox()
    list(box.fetch_new())
    box.mark_processed(first)
    old = box.folder_id("Processed", create=False)
    box.http.request("DELETE", f"users/{MAILBOX}/mailFolders/{old}", Call(what="a person"))
    (second,) = deliver(setup, 1, tag="n")

    for item in box.fetch_new():
        box.mark_processed(item.item_id)

    assert box.folder_id("Processed", create=False) != old
    (moved,) = setup.emu.folder_messages(MAILBOX, box.folder_id("Processed", create=False) or "")
    assert moved["id"] == second


def test_a_known_folder_is_confirmed_in_the_round_trip_of_the_cycles_first_move(
    setup: GraphSetup,
) -> None:
    (first,) = deliver(setup, 1)
    box = setup.mailbox()
    list(box.fetch_new())
    box.mark_processed(first)  # looked up, made, moved
    ids = deliver(setup, 2, tag="n")
    list(box.fetch_new())
    before = len(setup.emu.round_trips)

    for item_id in ids:
        box.mark_processed(item_id)

    trips = [r.path.rsplit("/", 1)[-1] for r in setup.emu.round_trips[before:]]
    assert trips == ["$batch", "move"]  # check + move together, then the move alone
    assert setup.emu.count_requests("GET", r"/mailFolders$") == 2  # once in each cycle
    assert setup.emu.count_requests("POST", r"/mailFolders$") == 1
    assert len(setup.emu.folder_messages(MAILBOX, "Processed")) == 3


def test_a_processed_folder_a_person_renamed_is_made_again(setup: GraphSetup) -> None:
    (first,) = deliver(setup, 1)
    box = setup.mailbox()
    list(box.fetch_new())
    box.mark_processed(first)
    old = box.folder_id("Processed", create=False) or ""
    setup.emu.mail.mailboxes[MAILBOX.lower()].folders[old].display_name = "Old concerns"
    second, third = deliver(setup, 2, tag="n")
    list(box.fetch_new())

    assert box.mark_processed_many([second, third]) == {second: None, third: None}

    new = box.folder_id("Processed", create=False)
    assert new is not None and new != old
    assert sorted(m["id"] for m in setup.emu.folder_messages(MAILBOX, "Processed")) == sorted(
        [second, third]
    )
    assert [m["id"] for m in setup.emu.folder_messages(MAILBOX, "Old concerns")] == [first]


def test_moves_batched_after_a_person_deleted_processed_land_in_a_new_one(
    setup: GraphSetup,
) -> None:
    (first,) = deliver(setup, 1)
    box = setup.mailbox()
    list(box.fetch_new())
    box.mark_processed(first)
    old = box.folder_id("Processed", create=False)
    box.http.request("DELETE", f"users/{MAILBOX}/mailFolders/{old}", Call(what="a person"))
    ids = deliver(setup, 3, tag="n")
    list(box.fetch_new())

    assert box.mark_processed_many(ids) == dict.fromkeys(ids)

    new = box.folder_id("Processed", create=False)
    assert new is not None and new != old
    assert sorted(m["id"] for m in setup.emu.folder_messages(MAILBOX, new)) == sorted(ids)


def test_a_folder_a_person_made_is_used(setup: GraphSetup) -> None:
    setup.emu.add_folder(MAILBOX, "Processed")
    (item_id,) = deliver(setup, 1)

    setup.mailbox().mark_processed(item_id)

    assert setup.emu.count_requests("POST", r"/mailFolders$") == 0
    assert len(setup.emu.folder_messages(MAILBOX, "Processed")) == 1


def purge(setup: GraphSetup, item_id: str) -> None:
    """A person deletes a message for good (Shift+Delete, or empties Deleted Items)."""
    setup.mailbox().http.request(
        "POST", f"users/{MAILBOX}/messages/{item_id}/permanentDelete", Call(what="a person")
    )


def test_fetch_of_a_purged_message_is_an_input_error(setup: GraphSetup) -> None:
    (item_id,) = deliver(setup, 1)
    box = setup.mailbox()
    purge(setup, item_id)

    with pytest.raises(InputError, match=r"no longer in safeguarding@example\.org"):
        box.fetch(item_id)


def test_a_custom_intake_folder(setup: GraphSetup, tmp_path: Path) -> None:
    setup.emu.add_folder(MAILBOX, "Concerns")
    raw = make_raw("Concern", "Filed by a rule", message_id="<f1@example.org>")
    setup.emu.deliver(MAILBOX, raw, folder="Concerns")
    deliver(setup, 1, "inbox")  # not the intake folder
    config = graph_config(setup.emu, tmp_path)
    section = config.intake.mailbox.model_copy(update={"folder": "Concerns"})  # type: ignore[union-attr]
    from connectors.graph_mail import GraphMailbox

    box = GraphMailbox.from_config(section, config, setup.ledger)  # type: ignore[arg-type]

    assert [item.raw for item in box.fetch_new()] == [raw]


def test_a_missing_intake_folder_is_named(setup: GraphSetup, tmp_path: Path) -> None:
    config = graph_config(setup.emu, tmp_path)
    section = config.intake.mailbox.model_copy(update={"folder": "Nowhere"})  # type: ignore[union-attr]
    from connectors.graph_mail import GraphMailbox

    box = GraphMailbox.from_config(section, config, setup.ledger)  # type: ignore[arg-type]

    with pytest.raises(ConnectorError, match=r"intake\.mailbox\.folder"):
        list(box.fetch_new())


def test_a_mailbox_outside_the_apps_rbac_scope_names_the_fix(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    setup = graph_setup(tmp_path, request)
    setup.emu.add_app(CLIENT_ID, secret=SECRET, mailboxes=["someone.else@example.org"])

    with pytest.raises(PermanentError) as info:
        list(setup.mailbox().fetch_new())

    text = str(info.value)
    assert "Mail.ReadWrite" in text
    assert "Test-ServicePrincipalAuthorization" in text
    assert "ApplicationAccessPolicy" in text  # Graph said "Access to OData is disabled"


def test_mailbox_checks_create_the_folders_and_report_each_line(setup: GraphSetup) -> None:
    lines = list(setup.mailbox().checks())

    assert [(line.name, line.ok) for line in lines] == [
        ("Graph token", True),
        (f"mailbox {MAILBOX}", True),
        ("folder Processed", True),
        ("folder Quarantine", True),
    ]
    assert "created" in lines[2].detail
    assert setup.emu.folder_messages(MAILBOX, "Quarantine") == []


def test_mailbox_checks_name_a_missing_permission(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    setup = graph_setup(tmp_path, request, permissions=("Sites.Selected",))

    lines = list(setup.mailbox().checks())

    failed = [line for line in lines if not line.ok]
    assert failed and failed[0].name == f"mailbox {MAILBOX}"
    assert "Mail.ReadWrite application permission" in failed[0].detail


# ---------------------------------------------------------------------------- sending


def sent_ids(setup: GraphSetup) -> list[str]:
    return [m.message()["Message-ID"] for m in setup.emu.outbox(MAILBOX)]


def test_a_send_leaves_a_copy_in_sent_items_and_no_draft(setup: GraphSetup) -> None:
    setup.sender().send(message())

    assert sent_ids(setup) == ["<alert.0001@example.org>"]
    (copy,) = setup.emu.sent_messages(MAILBOX)
    assert copy["internetMessageId"] == "<alert.0001@example.org>"
    assert setup.emu.folder_messages(MAILBOX, "drafts") == []


def test_an_unclear_send_that_went_through_is_not_sent_again(setup: GraphSetup) -> None:
    # Graph sends the mail, then the gateway times out: the answer is lost.
    setup.emu.add_fault("POST", r"/messages/[^/]+/send$", 504, after_commit=True)
    sender = setup.sender()

    sender.send(message())
    sender.send(message())  # the pipeline retrying after a crash

    assert sent_ids(setup) == ["<alert.0001@example.org>"]


def test_an_unclear_send_that_did_not_go_is_sent_once(setup: GraphSetup) -> None:
    setup.emu.add_fault("POST", r"/messages/[^/]+/send$", 504)

    setup.sender().send(message())

    assert sent_ids(setup) == ["<alert.0001@example.org>"]
    assert setup.emu.count_requests("POST", r"/send$") == 2


def test_a_dropped_connection_on_send_then_a_restart_sends_once(setup: GraphSetup) -> None:
    setup.emu.add_fault("POST", r"/messages/[^/]+/send$", 0, times=3)  # no answer at all

    with pytest.raises(TransientError, match="draft is kept"):
        setup.sender().send(message())
    assert sent_ids(setup) == []
    assert len(setup.emu.folder_messages(MAILBOX, "drafts")) == 1

    setup.sender().send(message())  # a new process: the draft id comes from the ledger

    assert sent_ids(setup) == ["<alert.0001@example.org>"]
    assert setup.emu.count_requests("POST", r"/users/[^/]+/messages$") == 1  # one draft


def leave_an_unsent_draft(setup: GraphSetup) -> str:
    """A send whose answers are all lost: the draft stays in Drafts, its id in the ledger."""
    setup.emu.add_fault("POST", r"/messages/[^/]+/send$", 0, times=3)  # no answer, not sent
    with pytest.raises(TransientError, match="draft is kept"):
        setup.sender().send(message())
    (draft,) = setup.emu.folder_messages(MAILBOX, "drafts")
    return str(draft["id"])


def test_a_draft_a_person_purged_is_made_again_and_sent(
    setup: GraphSetup, caplog: pytest.LogCaptureFixture
) -> None:
    draft_id = leave_an_unsent_draft(setup)
    purge(setup, draft_id)  # a person tidies Drafts for good after the crash
    sleeps_before = len(setup.sleeps.waits)
    caplog.clear()

    with caplog.at_level("WARNING", logger="prevent_service.graph"):
        setup.sender().send(message())  # the next cycle

    assert sent_ids(setup) == ["<alert.0001@example.org>"]  # not lost …
    setup.sender().send(message())
    assert len(setup.emu.outbox(MAILBOX)) == 1  # … and recorded as sent once it went
    assert setup.emu.folder_messages(MAILBOX, "drafts") == []
    assert setup.emu.count_requests("POST", r"/users/[^/]+/messages$") == 2  # a new draft
    assert len(setup.sleeps.waits) > sleeps_before  # it let Sent Items settle before deciding
    (warning,) = [r for r in caplog.records if r.levelname == "WARNING"]
    assert "<alert.0001@example.org>" in warning.getMessage()
    assert "PRV-2026-0001" not in warning.getMessage() and "Zoë" not in warning.getMessage()


def test_a_draft_gone_during_an_unclear_send_and_absent_from_sent_items_is_made_again(
    setup: GraphSetup,
) -> None:
    setup.emu.add_fault("POST", r"/messages/[^/]+/send$", 0)  # no answer; not sent
    # The read-back of the draft answers 404, as if a person had just deleted it for good.
    setup.emu.add_fault("GET", r"/messages/[^/]+$", 404)

    setup.sender().send(message())

    assert sent_ids(setup) == ["<alert.0001@example.org>"]
    assert setup.emu.count_requests("POST", r"/users/[^/]+/messages$") == 2
    # Sent Items was searched before the 404 and again after settling.
    assert setup.emu.count_requests("GET", r"/mailFolders/sentitems/messages$") == 2


def test_a_draft_a_person_deleted_to_deleted_items_is_sent_once(setup: GraphSetup) -> None:
    draft_id = leave_an_unsent_draft(setup)
    setup.mailbox().http.request(
        "DELETE", f"users/{MAILBOX}/messages/{draft_id}", Call(what="a person")
    )

    setup.sender().send(message())
    setup.sender().send(message())

    assert sent_ids(setup) == ["<alert.0001@example.org>"]
    assert setup.emu.folder_messages(MAILBOX, "deleteditems") == []
    assert setup.emu.count_requests("POST", r"/users/[^/]+/messages$") == 1


def test_an_unclear_draft_creation_reuses_the_draft(setup: GraphSetup) -> None:
    setup.emu.add_fault("POST", r"/users/[^/]+/messages$", 504, after_commit=True)

    setup.sender().send(message())

    assert sent_ids(setup) == ["<alert.0001@example.org>"]
    assert setup.emu.count_requests("POST", r"/users/[^/]+/messages$") == 1
    assert setup.emu.folder_messages(MAILBOX, "drafts") == []


def test_send_without_mail_send_names_the_permission(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    setup = graph_setup(tmp_path, request, permissions=("Mail.ReadWrite", "Sites.Selected"))

    with pytest.raises(PermanentError, match=r"Mail\.Send application permission"):
        setup.sender().send(message())
    assert sent_ids(setup) == []


def test_the_sender_uses_the_mime_path_so_both_bodies_and_headers_survive(
    setup: GraphSetup,
) -> None:
    setup.sender().send(message(high_importance=True))

    (out,) = setup.emu.outbox(MAILBOX)
    sent = out.message()
    assert sent["Auto-Submitted"] == "auto-generated"
    assert sent.get_content_type() == "multipart/alternative"
    assert sorted(out.recipients) == ["deputy.dsp@example.org", "dsp@example.org"]
    (copy,) = setup.emu.sent_messages(MAILBOX)
    assert copy["importance"] == "high"


def test_an_unknown_mailbox_is_named(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    setup = graph_setup(tmp_path, request)
    setup.emu.reset()
    setup.emu.add_app(CLIENT_ID, secret=SECRET)  # the app, but no such mailbox

    with pytest.raises(PermanentError, match=r"mailbox safeguarding@example\.org not found"):
        list(setup.mailbox().fetch_new())


def test_moving_a_message_a_person_purged_is_an_input_error(setup: GraphSetup) -> None:
    (item_id,) = deliver(setup, 1)
    box = setup.mailbox()
    purge(setup, item_id)

    with pytest.raises(InputError, match="cannot be moved to 'Processed'"):
        box.mark_processed(item_id)


def test_a_message_a_person_deleted_mid_poll_is_still_filed_in_processed(
    setup: GraphSetup,
) -> None:
    (item_id,) = deliver(setup, 1)
    box = setup.mailbox()
    (item,) = list(box.fetch_new())
    # Graph's DELETE moves it to Deleted Items; the immutable id still reaches it there.
    box.http.request("DELETE", f"users/{MAILBOX}/messages/{item_id}", Call(what="a person"))

    box.mark_processed(item.item_id)

    assert [m["id"] for m in setup.emu.folder_messages(MAILBOX, "Processed")] == [item_id]
    assert setup.emu.folder_messages(MAILBOX, "deleteditems") == []


# ---------------------------------------------------------------------------- drafts after a kill


class Killed(BaseException):
    """Stands in for SIGKILL: nothing after it runs, no except clause catches it."""


def kill_after_drafting(monkeypatch: pytest.MonkeyPatch) -> None:
    """The process dies after Graph answered 201 to the draft and before its id is recorded."""
    original = GraphSender._create_draft

    def create_then_die(self: GraphSender, msg: Any) -> str:
        original(self, msg)
        raise Killed

    monkeypatch.setattr(GraphSender, "_create_draft", create_then_die)


@pytest.mark.parametrize("kills", [1, 2])
def test_a_draft_left_by_a_kill_is_reused_and_no_copy_stays_in_drafts(
    setup: GraphSetup, monkeypatch: pytest.MonkeyPatch, kills: int
) -> None:
    with monkeypatch.context() as patch:
        kill_after_drafting(patch)
        for _ in range(kills):
            # A second orphan: one left by a version that did not plan drafts in the ledger.
            setup.ledger.delete(f"graph.send:{MAILBOX}:<alert.0001@example.org>")
            with pytest.raises(Killed):
                setup.sender().send(message())
    assert len(setup.emu.folder_messages(MAILBOX, "drafts")) == kills  # the orphans

    setup.sender().send(message())  # the next process
    setup.sender().send(message())  # and one more: recorded as sent

    assert sent_ids(setup) == ["<alert.0001@example.org>"]
    assert setup.emu.folder_messages(MAILBOX, "drafts") == []
    assert setup.emu.folder_messages(MAILBOX, "deleteditems") == []  # purged, not binned
    assert setup.emu.count_requests("POST", r"/users/[^/]+/messages$") == kills  # none new


def test_a_kill_before_the_draft_was_made_drafts_once(
    setup: GraphSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:

        def die(self: GraphSender, msg: Any) -> str:
            raise Killed

        patch.setattr(GraphSender, "_create_draft", die)
        with pytest.raises(Killed):
            setup.sender().send(message())

    setup.sender().send(message())

    assert sent_ids(setup) == ["<alert.0001@example.org>"]
    assert setup.emu.folder_messages(MAILBOX, "drafts") == []


def test_a_message_sent_by_a_stopped_attempt_is_not_sent_again(
    setup: GraphSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Killed after the send went through but before the ledger said so, with the ledger
    # still at "planned" (the draft id was never recorded): Sent Items tells.
    sender = setup.sender()
    sender.send(message())
    key = f"graph.send:{MAILBOX}:<alert.0001@example.org>"
    setup.ledger.set(key, "planned:2026-01-01T00:00:00+00:00")

    setup.sender().send(message())

    assert sent_ids(setup) == ["<alert.0001@example.org>"]


def test_a_fresh_send_does_not_search_drafts(setup: GraphSetup) -> None:
    setup.sender().send(message())

    assert setup.emu.count_requests("GET", r"/mailFolders/drafts/messages$") == 0


def test_stale_drafts_are_listed_from_the_ledger_without_a_credential(
    setup: GraphSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import UTC, datetime, timedelta

    with monkeypatch.context() as patch:
        kill_after_drafting(patch)
        with pytest.raises(Killed):
            setup.sender().send(message())
    now = datetime.now(UTC)

    listed = GraphSender.stale_drafts(setup.ledger, MAILBOX, now, timedelta(minutes=10))
    later = GraphSender.stale_drafts(
        setup.ledger, MAILBOX, now + timedelta(minutes=11), timedelta(minutes=10)
    )

    assert listed == []  # just made: the worker may still be on it
    assert [message_id for message_id, _ in later] == ["<alert.0001@example.org>"]
    setup.sender().send(message())
    assert (
        GraphSender.stale_drafts(
            setup.ledger, MAILBOX, now + timedelta(minutes=11), timedelta(minutes=10)
        )
        == []
    )
