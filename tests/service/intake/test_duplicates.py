"""Duplicates leave the intake folder with a record, even when the first move fails."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from connectors.folder import FolderMailbox
from connectors.memory import MemoryMailbox, MemorySender, MemoryWorkbook
from service.app import App
from service.cases.register import register_table_spec
from service.config import Config
from service.errors import TransientError
from service.intake import pipeline
from service.ledger import ItemState
from tests.conftest import Clock
from tests.service.intake.test_pipeline import alerts, mail


def test_a_duplicate_whose_move_fails_is_moved_on_a_later_cycle(
    memory_app: App, clock: Clock
) -> None:
    box = memory_app.mailbox()
    assert isinstance(box, MemoryMailbox)
    box.deliver(mail(message_id="<same@example.org>"), item_id="first")
    assert pipeline.poll(memory_app).done == 1
    box.deliver(mail(message_id="<same@example.org>"), item_id="copy")
    real_move = box.mark_processed

    def failing_once(item_id: str) -> None:
        box.mark_processed = real_move  # type: ignore[method-assign]
        raise TransientError("the server went away")

    box.mark_processed = failing_once  # type: ignore[method-assign]
    pipeline.poll(memory_app)
    assert "copy" in box.inbox  # not moved yet, and not finished as if it had been
    assert memory_app.ledger.item("mail:copy").state == ItemState.OPEN  # type: ignore[union-attr]

    clock.advance(hours=2)
    later = pipeline.poll(memory_app)

    assert later.duplicates == 1
    assert box.inbox == {}
    assert memory_app.ledger.item("mail:copy").state == ItemState.DUPLICATE  # type: ignore[union-attr]
    assert len(alerts(memory_app)) == 1


def test_copies_without_a_message_id_are_recognised_by_their_bytes(memory_app: App) -> None:
    box = memory_app.mailbox()
    assert isinstance(box, MemoryMailbox)
    raw = mail(message_id=None)
    box.deliver(raw, item_id="a")
    box.deliver(raw, item_id="b")
    box.deliver(mail("Another worry, other words.", message_id=None), item_id="c")

    result = pipeline.poll(memory_app)

    assert (result.done, result.duplicates) == (2, 1)
    assert len(alerts(memory_app)) == 2
    note = memory_app.ledger.item("mail:b").last_error  # type: ignore[union-attr]
    assert note == "same bytes as mail:a"


def test_a_quarantined_message_a_person_puts_back_is_taken_again(
    tmp_path: Path, make_config: Callable[..., Config], clock: Clock
) -> None:
    """Quarantined for its size, put back into the inbox folder once the limit was raised: it
    was left there for good (a replay of a quarantined item was skipped); now it is a concern."""
    inbox = tmp_path / "inbox"
    box = FolderMailbox(inbox, settle_seconds=0)
    raw = mail("A long account of what a learner said. " * 50)

    def app_with_limit(limit: int) -> App:
        register = MemoryWorkbook()
        spec = register_table_spec()
        register.add_table(spec.table, [c.header for c in spec.columns], [])
        config = make_config({"intake": {"forms": None, "max_message_bytes": limit}})
        return App(
            config, now=clock, mailbox=box, sender=MemorySender(), workbooks={"register": register}
        )

    small = app_with_limit(len(raw) - 1)
    (inbox / "concern.eml").write_bytes(raw)
    assert pipeline.poll(small).quarantined == 1
    (aside,) = [p for p in (inbox / "quarantine").iterdir() if p.suffix == ".eml"]
    small.ledger.close()

    bigger = app_with_limit(len(raw) * 2)  # the admin raises the limit…
    aside.rename(inbox / "concern.eml")  # …and moves the message back
    result = pipeline.poll(bigger)

    assert (result.done, result.alerts) == (1, 1), result
    assert [p.name for p in inbox.glob("*.eml")] == []
    assert len(list((inbox / "processed").glob("*.eml"))) == 1


def test_an_unreadable_message_put_back_goes_aside_again(tmp_path: Path, memory_app: App) -> None:
    inbox = tmp_path / "inbox"
    box = FolderMailbox(inbox, settle_seconds=0)
    memory_app._mailbox = box
    (inbox / "odd.eml").write_bytes(b"\x00\x01 not mail at all")
    assert pipeline.poll(memory_app).quarantined == 1
    (aside,) = [p for p in (inbox / "quarantine").iterdir() if p.suffix == ".eml"]
    aside.rename(inbox / "odd.eml")

    again = pipeline.poll(memory_app)

    assert again.quarantined == 1 and again.ok
    assert list(inbox.glob("*.eml")) == []
    assert memory_app.ledger.counts_by_state() == {ItemState.QUARANTINED: 1}
