"""The folder mailbox: what people and mail rules really leave in a folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from connectors.folder import FolderMailbox, item_id_for
from service.config import parse_config
from service.errors import InputError

NOW = 1_800_000_000.0


def aside_file(inbox: Path, name: str) -> Path:
    """The file the backend set aside as ``aside-<id>--<name>`` in quarantine/."""
    (path,) = (inbox / "quarantine").glob(f"aside-*--{name}")
    return path


def drop(folder: Path, name: str, data: bytes, *, age: float = 60.0) -> Path:
    path = folder / name
    path.write_bytes(data)
    os.utime(path, (NOW - age, NOW - age))
    return path


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    return tmp_path / "inbox"


@pytest.fixture
def box(inbox: Path) -> FolderMailbox:
    return FolderMailbox(inbox, max_message_bytes=10_000, clock=lambda: NOW)


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_creates_its_folders(box: FolderMailbox, inbox: Path) -> None:
    assert (inbox / "processed").is_dir() and (inbox / "quarantine").is_dir()


def test_temporary_and_hidden_files_are_ignored(box: FolderMailbox, inbox: Path) -> None:
    for name in [".hidden.eml", "~$draft.eml", "a.eml.tmp", "b.eml.part", "c.part", "notes.txt"]:
        drop(inbox, name, b"Subject: x\r\n\r\nbody\r\n")
    real = drop(inbox, "real.eml", b"Subject: real\r\n\r\nbody\r\n")

    items = list(box.fetch_new())

    assert [i.raw for i in items] == [real.read_bytes()]
    assert names(inbox / "quarantine") == []


def test_a_file_still_being_written_waits_for_the_next_poll(inbox: Path) -> None:
    clock = [NOW]
    box = FolderMailbox(inbox, clock=lambda: clock[0])
    drop(inbox, "arriving.eml", b"Subject: partial", age=0.5)

    assert list(box.fetch_new()) == []

    clock[0] += 5
    assert [i.raw for i in box.fetch_new()] == [b"Subject: partial"]


def test_item_ids_come_from_content_not_names(box: FolderMailbox, inbox: Path) -> None:
    drop(inbox, "Concern about Jane Example.eml", b"Subject: one\r\n\r\n1\r\n")

    (item,) = list(box.fetch_new())

    assert item.item_id == item_id_for(b"Subject: one\r\n\r\n1\r\n")
    assert "Jane" not in item.item_id  # ids reach the ledger and logs; names must not


def test_a_reused_file_name_is_a_new_item_and_nothing_is_overwritten(
    box: FolderMailbox, inbox: Path
) -> None:
    drop(inbox, "concern.eml", b"Subject: first\r\n\r\n1\r\n")
    (first,) = list(box.fetch_new())
    box.mark_processed(first.item_id)
    drop(inbox, "concern.eml", b"Subject: second\r\n\r\n2\r\n")
    (second,) = list(box.fetch_new())
    box.mark_processed(second.item_id)

    assert first.item_id != second.item_id
    processed = sorted((inbox / "processed").iterdir())
    assert sorted(p.read_bytes() for p in processed) == [
        b"Subject: first\r\n\r\n1\r\n",
        b"Subject: second\r\n\r\n2\r\n",
    ]
    assert box.fetch(first.item_id).raw == b"Subject: first\r\n\r\n1\r\n"


def test_the_same_bytes_dropped_twice_are_one_item_and_both_files_clear(
    box: FolderMailbox, inbox: Path
) -> None:
    drop(inbox, "a.eml", b"Subject: same\r\n\r\n")
    drop(inbox, "b.eml", b"Subject: same\r\n\r\n")

    items = list(box.fetch_new())
    assert {i.item_id for i in items} == {item_id_for(b"Subject: same\r\n\r\n")}
    box.mark_processed(items[0].item_id)

    assert not list(inbox.glob("*.eml"))
    assert len(names(inbox / "processed")) == 2


def test_a_new_instance_replays_what_is_still_in_the_inbox(inbox: Path) -> None:
    first = FolderMailbox(inbox, clock=lambda: NOW)
    drop(inbox, "m.eml", b"Subject: pending\r\n\r\n")
    (item,) = list(first.fetch_new())
    assert list(first.fetch_new()) == []

    after_restart = FolderMailbox(inbox, clock=lambda: NOW)
    assert [i.item_id for i in after_restart.fetch_new()] == [item.item_id]


def test_an_oversized_file_is_quarantined_unread_with_a_reason(
    box: FolderMailbox, inbox: Path
) -> None:
    drop(inbox, "huge.eml", b"x" * 10_001)

    # Set aside, and reported so that the pipeline tells the DSP.
    (aside,) = list(box.fetch_new())
    assert aside.problem and aside.raw == b"" and aside.item_id.startswith("aside-")
    assert box.fetch(aside.item_id).problem == aside.problem.split("\n")[0]
    box.quarantine(aside.item_id, aside.problem)  # idempotent: already there

    reason = aside_file(inbox, "huge.eml.reason.txt").read_text()
    assert "intake.max_message_bytes" in reason and "10,001" in reason
    assert aside_file(inbox, "huge.eml").stat().st_size == 10_001


def test_quarantine_writes_a_reason_beside_the_file(box: FolderMailbox, inbox: Path) -> None:
    drop(inbox, "bad.eml", b"\x00\x01 not mail")
    (item,) = list(box.fetch_new())

    box.quarantine(item.item_id, "The message could not be parsed.")

    (moved,) = [p for p in (inbox / "quarantine").iterdir() if not p.name.endswith(".txt")]
    assert moved.name == f"{item.item_id}--bad.eml"
    note = moved.with_name(moved.name + ".reason.txt").read_text()
    assert note.startswith("The message could not be parsed.")
    assert box.fetch(item.item_id).raw == b"\x00\x01 not mail"


def test_symlinks_are_never_followed(box: FolderMailbox, inbox: Path, tmp_path: Path) -> None:
    secret = tmp_path / "outside.eml"
    secret.write_bytes(b"Subject: outside the inbox\r\n\r\n")
    (inbox / "link.eml").symlink_to(secret)

    # Set aside, and reported so that the pipeline tells the DSP.
    (aside,) = list(box.fetch_new())
    assert aside.problem and aside.raw == b"" and aside.item_id.startswith("aside-")
    assert box.fetch(aside.item_id).problem == aside.problem.split("\n")[0]
    box.quarantine(aside.item_id, aside.problem)  # idempotent: already there

    moved = aside_file(inbox, "link.eml")
    assert moved.is_symlink()  # the link itself was moved, not what it points to
    assert secret.read_bytes() == b"Subject: outside the inbox\r\n\r\n"
    assert "symbolic link" in aside_file(inbox, "link.eml.reason.txt").read_text()


def test_a_symlinked_processed_folder_is_refused(inbox: Path, tmp_path: Path) -> None:
    inbox.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (inbox / "processed").symlink_to(tmp_path / "elsewhere")

    with pytest.raises(Exception, match="symbolic link"):
        FolderMailbox(inbox)


def test_quarantine_on_a_full_disk_moves_the_file_and_raises_no_bare_oserror(
    box: FolderMailbox, inbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A move needs no space; the reason note does. The DSP's notice already carries the
    reason, so a note that cannot be written must not crash the cycle."""
    import errno

    import connectors.folder as folder_mod

    def no_space(*_: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    drop(inbox, "bad.eml", b"\x00\x01 not mail")
    (item,) = list(box.fetch_new())
    monkeypatch.setattr(folder_mod, "write_atomic", no_space)

    box.quarantine(item.item_id, "The message could not be parsed.")

    assert names(inbox / "quarantine") == [f"{item.item_id}--bad.eml"]
    assert names(inbox) == ["processed", "quarantine"]


def test_outlook_msg_files_are_quarantined_with_advice(box: FolderMailbox, inbox: Path) -> None:
    drop(inbox, "Concern.msg", b"\xd0\xcf\x11\xe0 compound file")

    # Set aside, and reported so that the pipeline tells the DSP.
    (aside,) = list(box.fetch_new())
    assert aside.problem and aside.raw == b"" and aside.item_id.startswith("aside-")
    assert box.fetch(aside.item_id).problem == aside.problem.split("\n")[0]
    box.quarantine(aside.item_id, aside.problem)  # idempotent: already there

    assert ".eml" in aside_file(inbox, "Concern.msg.reason.txt").read_text()


def test_odd_file_names_are_handled(box: FolderMailbox, inbox: Path) -> None:
    odd = os.fsdecode(b"\xff\xfe odd name " + "é".encode() * 115 + b".eml")
    drop(inbox, odd, b"Subject: odd\r\n\r\n")

    (item,) = list(box.fetch_new())
    box.mark_processed(item.item_id)

    (moved,) = (inbox / "processed").iterdir()
    assert len(os.fsencode(moved.name)) <= 255
    assert moved.name.endswith(".eml")


def test_unknown_and_malformed_ids_are_input_errors(box: FolderMailbox) -> None:
    with pytest.raises(InputError, match="not found"):
        box.fetch(item_id_for(b"never delivered"))
    with pytest.raises(InputError, match="not a folder mailbox item id"):
        box.fetch("../../etc/passwd")
    with pytest.raises(InputError):
        box.mark_processed(item_id_for(b"never delivered"))


def test_from_config_uses_the_intake_size_limit(tmp_path: Path) -> None:
    config = parse_config(
        {
            "organisation": {"name": "Example Training Ltd"},
            "people": {
                "dsp": {"name": "Dana Example", "email": "dsp@example.org"},
                "admin_email": "it@example.org",
            },
            "intake": {
                "address": "safeguarding@example.org",
                "max_message_bytes": 1234,
                "mailbox": {"backend": "folder", "path": "inbox"},
            },
            "register": {"workbook": {"backend": "memory"}},
            "sending": {"sender": {"backend": "outbox", "path": "outbox"}},
        },
        source=tmp_path / "config.toml",
    )
    assert config.intake.mailbox is not None

    box = FolderMailbox.from_config(config.intake.mailbox, config, None)  # type: ignore[arg-type]

    assert box.max_message_bytes == 1234
    assert box.path == tmp_path / "inbox"


def test_files_still_settling_and_other_files_are_mentioned_without_names(
    box: FolderMailbox, inbox: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging
    import time

    (inbox / "Robin Example concern.eml").write_bytes(b"From: a@example.org\r\n\r\nx")
    (inbox / "Robin Example notes.docx").write_bytes(b"PK")
    box._clock = time.time  # the file was written just now
    with caplog.at_level(logging.INFO, logger="connectors.folder"):
        assert list(box.fetch_new()) == []
    assert "taken on the next poll" in caplog.text and "not .eml" in caplog.text
    assert "Robin" not in caplog.text


@pytest.mark.usefixtures("open_umask")
def test_processed_and_quarantine_are_private(inbox: Path) -> None:
    """They hold concern text: the service's user only. The drop folder is left as people need."""
    box = FolderMailbox(inbox, max_message_bytes=10_000, clock=lambda: NOW)
    drop(inbox, "bad.eml", b"\x00\x01 not mail")
    (item,) = list(box.fetch_new())
    box.quarantine(item.item_id, "The message could not be parsed.")
    assert (inbox / "processed").stat().st_mode & 0o777 == 0o700
    assert (inbox / "quarantine").stat().st_mode & 0o777 == 0o700
    (note,) = (inbox / "quarantine").glob("*.reason.txt")
    assert note.stat().st_mode & 0o777 == 0o600


@pytest.mark.usefixtures("open_umask")
def test_moved_mail_files_are_private_whatever_mode_they_were_dropped_with(inbox: Path) -> None:
    """A file dropped 0644 holds concern text once taken: 0600 in processed/ and quarantine/."""
    box = FolderMailbox(inbox, max_message_bytes=10_000, clock=lambda: NOW)
    good = drop(inbox, "good.eml", b"From: a@example.org\r\nSubject: x\r\n\r\nbody\r\n")
    bad = drop(inbox, "bad.eml", b"\x00\x01 not mail")
    good.chmod(0o644)
    bad.chmod(0o644)
    items = {i.raw[:4]: i for i in box.fetch_new()}
    box.mark_processed(items[b"From"].item_id)
    box.quarantine(items[b"\x00\x01 n"].item_id, "The message could not be parsed.")
    (done,) = (inbox / "processed").iterdir()
    moved = [p for p in (inbox / "quarantine").iterdir() if not p.name.endswith(".reason.txt")]
    assert len(moved) == 1
    assert {oct(p.stat().st_mode & 0o777) for p in (done, *moved)} == {oct(0o600)}
