"""The outbox sender: one .eml per Message-ID, written atomically, never twice."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest

import connectors.files as files_mod
from connectors.base import OutboundMessage
from connectors.outbox import OutboxSender, file_name_for
from service.errors import InputError, TransientError


def message(message_id: str = "<alert.0001@example.org>") -> OutboundMessage:
    return OutboundMessage(
        message_id=message_id,
        sender="safeguarding@example.org",
        to=("dsp@example.org",),
        subject="New concern PRV-2026-0001",
        text="Reference PRV-2026-0001",
        html="<p>Reference PRV-2026-0001</p>",
    )


def test_file_is_named_from_the_message_id(tmp_path: Path) -> None:
    OutboxSender(tmp_path).send(message())

    assert [p.name for p in tmp_path.iterdir()] == ["alert.0001@example.org.eml"]
    parsed = email.message_from_bytes(
        (tmp_path / "alert.0001@example.org.eml").read_bytes(), policy=email.policy.default
    )
    assert parsed["Message-ID"] == "<alert.0001@example.org>"


@pytest.mark.parametrize(
    "message_id",
    ["<../../etc/passwd@example.org>", "<a/b\\c:d*e?f@example.org>", "<" + "x" * 400 + ">", "<.>"],
)
def test_hostile_message_ids_stay_inside_the_folder(tmp_path: Path, message_id: str) -> None:
    OutboxSender(tmp_path / "out").send(message(message_id))

    (written,) = (tmp_path / "out").iterdir()
    assert written.parent == tmp_path / "out"
    assert not written.name.startswith(".")
    assert len(written.name) < 200 and "/" not in written.name


def test_ids_that_sanitise_alike_do_not_collide() -> None:
    assert file_name_for("<a/b@example.org>") != file_name_for("<a_b@example.org>")
    assert file_name_for("<a/b@example.org>") != file_name_for("<a:b@example.org>")


def test_a_resend_is_skipped(tmp_path: Path) -> None:
    sender = OutboxSender(tmp_path)
    sender.send(message())
    before = (tmp_path / "alert.0001@example.org.eml").stat().st_mtime_ns

    sender.send(message())

    assert len(list(tmp_path.iterdir())) == 1
    assert (tmp_path / "alert.0001@example.org.eml").stat().st_mtime_ns == before


def test_a_failed_write_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_replace(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files_mod.os, "replace", broken_replace)

    with pytest.raises(TransientError, match="No space left"):
        OutboxSender(tmp_path).send(message())

    assert list(tmp_path.iterdir()) == []


def test_a_message_without_an_id_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="Message-ID"):
        OutboxSender(tmp_path).send(message("  "))


@pytest.mark.usefixtures("open_umask")
def test_the_outbox_and_its_messages_are_private(tmp_path: Path) -> None:
    """An alert with alert_detail = "full" holds the concern itself: 0600 in a 0700 folder."""
    box = OutboxSender(tmp_path / "outbox")
    box.send(message())
    assert (tmp_path / "outbox").stat().st_mode & 0o777 == 0o700
    (sent,) = (tmp_path / "outbox").iterdir()
    assert sent.stat().st_mode & 0o777 == 0o600


@pytest.mark.usefixtures("open_umask")
def test_a_replaced_file_keeps_the_mode_it_was_given(tmp_path: Path) -> None:
    target = tmp_path / "report.xlsx"
    target.write_bytes(b"old")
    target.chmod(0o640)  # e.g. readable by the DSP's group on purpose
    files_mod.write_atomic(target, b"new")
    assert target.read_bytes() == b"new" and target.stat().st_mode & 0o777 == 0o640
