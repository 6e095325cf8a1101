"""Duplicates leave the intake folder with a record, even when the first move fails."""

from __future__ import annotations

from connectors.memory import MemoryMailbox
from service.app import App
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
