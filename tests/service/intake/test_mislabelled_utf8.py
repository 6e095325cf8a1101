"""A message whose declared charset is a single-byte one (ISO-8859-1, windows-1252, …) but
whose bytes are valid UTF-8 is read as UTF-8 (issue 8: the hold-out subject landed in the
register as mojibake). Text that really is in the declared charset still reads as declared."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from service.intake.mailparse import parse_message
from tests.cli.helpers import register_rows
from tests.service.intake.test_hostile_input import drop, run
from tests.service.intake.test_mailparse import mail


def q_word(charset: str, data: bytes) -> str:
    """An RFC 2047 Q-encoded word for ``data`` labelled ``charset``."""
    return f"=?{charset}?q?" + "".join(f"={b:02X}" for b in data) + "?="


def test_a_subject_of_utf8_bytes_labelled_latin1_reads_as_written() -> None:
    subject = "Zoë’s naïve “résumé” – Straße"
    for label in ("iso-8859-1", "windows-1252", "ISO-8859-15", "us-ascii"):
        parsed = parse_message(mail(f"Subject: {q_word(label, subject.encode())}"))
        assert parsed.subject == subject, label


def test_a_body_of_utf8_bytes_labelled_windows_1252_reads_as_written() -> None:
    text = "Ahmed said “they deserve it” — at the Łódź event, 5 € each"
    raw = mail('Content-Type: text/plain; charset="windows-1252"', body=text.encode())
    parsed = parse_message(raw)
    assert parsed.text == text
    assert "wrong-charset" in parsed.defects  # said, without content


def test_real_single_byte_text_still_reads_in_its_declared_charset() -> None:
    cases = {
        "windows-1252": "Café – “quoted” … naïve",
        "iso-8859-2": "Zażółć gęślą jaźń",
        "koi8-r": "Привет, как дела",
        "iso-8859-7": "Καλημέρα",
    }
    for label, text in cases.items():
        data = text.encode(label)
        raw = mail(f"Content-Type: text/plain; charset={label}", body=data)
        assert parse_message(raw).text == text, label
        assert parse_message(mail(f"Subject: {q_word(label, data)}")).subject == text, label


def test_a_multibyte_label_is_not_second_guessed() -> None:
    text = "こんにちは、先生"
    raw = mail("Content-Type: text/plain; charset=shift_jis", body=text.encode("shift_jis"))
    assert parse_message(raw).text == text


# Letters, marks, numbers, punctuation and symbols: whitespace and control characters are
# normalised by the parser on purpose, which is not what these properties are about.
PRINTABLE = ("Cs", "Cc", "Cf", "Co", "Cn", "Zs", "Zl", "Zp")


@given(st.text(st.characters(codec="utf-8", exclude_categories=PRINTABLE), max_size=60))
def test_any_text_sent_as_utf8_under_a_latin1_label_comes_back(text: str) -> None:
    raw = mail("Content-Type: text/plain; charset=iso-8859-1", body=f"x{text}x".encode())
    assert parse_message(raw).text == f"x{text}x"


@given(
    st.text(
        st.characters(codec="cp1252", min_codepoint=0x80, exclude_categories=PRINTABLE),
        min_size=1,
        max_size=40,
    )
)
def test_cp1252_text_that_is_not_valid_utf8_stays_cp1252(text: str) -> None:
    data = text.encode("cp1252")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        raw = mail("Content-Type: text/plain; charset=windows-1252", body=b"x" + data + b"x")
        assert parse_message(raw).text == f"x{text}x"


def test_the_register_shows_the_subject_as_written(tmp_path: Path) -> None:
    from datetime import date

    from service.admin.setup import init_folder

    folder = tmp_path / "svc"
    init_folder(folder, demo=False, today=date(2026, 11, 24))
    subject = "Ünïcode in the wrong label: Œuvre — “ok”"
    raw = (
        "From: Staff <staff@example.org>\r\nTo: safeguarding@example.org\r\n"
        f"Subject: {q_word('iso-8859-1', subject.encode())}\r\n"
        "Message-ID: <mislabelled@example.org>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=iso-8859-1\r\n\r\n"
    ).encode() + "Crème brûlée – met at the café.\r\n".encode()
    drop(folder, "m.eml", raw)
    run(folder)
    rows = register_rows(folder / "workbooks" / "concern-register.xlsx")
    assert [r["Summary"] for r in rows] == [subject]
    assert rows[0]["Account"] == "Crème brûlée – met at the café."
