"""In-memory backends: the extras tests of other modules lean on (failure hooks, key column)."""

from __future__ import annotations

import pytest

from connectors.base import OutboundMessage
from connectors.memory import MemoryMailbox, MemorySender, MemoryWorkbook
from service.errors import InputError, TransientError


def test_workbook_append_with_key_column_skips_known_keys() -> None:
    wb = MemoryWorkbook()
    wb.add_table("Concerns", ["Reference", "Source key"], [["PRV-2026-0001", "mail:a"]])

    wb.append_rows(
        "Concerns",
        [
            {"Reference": "dup", "Source key": "mail:a"},
            {"Reference": "new", "Source key": "mail:b"},
        ],
        key_column="Source key",
    )

    assert [r["Reference"] for r in wb.read_table("Concerns").rows] == ["PRV-2026-0001", "new"]


def test_workbook_fail_after_write_is_an_ambiguous_failure() -> None:
    wb = MemoryWorkbook()
    wb.add_table("Concerns", ["Reference"])
    wb.fail_after_next = TransientError("504 gateway timeout")

    with pytest.raises(TransientError):
        wb.append_rows("Concerns", [{"Reference": "PRV-2026-0001"}])

    assert wb.find_rows("Concerns", "Reference", ["PRV-2026-0001"]) == {"PRV-2026-0001": 2}


def test_sender_fail_next_sends_nothing_then_recovers() -> None:
    sender = MemorySender()
    sender.fail_next = TransientError("connection reset")
    msg = OutboundMessage("<m1@example.org>", "a@example.org", ("b@example.org",), "s", "t", "h")

    with pytest.raises(TransientError):
        sender.send(msg)
    sender.send(msg)

    assert [m.message_id for m in sender.sent] == ["<m1@example.org>"]


def test_mailbox_unknown_item_is_an_input_error() -> None:
    box = MemoryMailbox()
    with pytest.raises(InputError, match="mem-9"):
        box.mark_processed("mem-9")
    item_id = box.deliver(b"Subject: x\r\n\r\n")
    box.mark_processed(item_id)
    assert box.fetch(item_id).raw == b"Subject: x\r\n\r\n"
