"""Property tests: the parser and the indicator matcher never fail on hostile input.

``parse_message`` may only raise ``InputError`` (the item is then quarantined); anything else
would stop intake. Examples are bounded so the module runs in seconds; hypothesis keeps no
example database here so runs are independent of each other.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.errors import InputError
from service.indicators import (
    ALL,
    describe,
    explain,
    form_choices,
    from_form_answer,
    groups_of,
    suggest_from_text,
)
from service.intake.mailparse import (
    MAX_FILENAME_CHARS,
    MAX_SUBJECT_CHARS,
    ParsedMail,
    classify,
    display_filename,
    parse_message,
)
from service.triage.learned import LEARNED_CRITICAL

FIXTURES = sorted((Path(__file__).resolve().parents[2] / "fixtures" / "mail").glob("*.eml"))
SEEDS = [path.read_bytes() for path in FIXTURES]

FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def check(raw: bytes, max_text_chars: int = 2_000) -> ParsedMail | None:
    """Parse; only InputError may escape, and the result must keep the API's promises."""
    try:
        parsed = parse_message(raw, max_text_chars=max_text_chars)
    except InputError as exc:
        assert str(exc)  # says why
        return None
    assert isinstance(parsed, ParsedMail)
    assert len(parsed.text) <= max_text_chars
    assert len(parsed.subject) <= MAX_SUBJECT_CHARS and "\n" not in parsed.subject
    assert parsed.from_address is None or parsed.from_address == parsed.from_address.lower()
    assert parsed.message_id is None or (
        parsed.message_id.startswith("<") and parsed.message_id.endswith(">")
    )
    assert parsed.date is None or (
        isinstance(parsed.date, datetime) and parsed.date.tzinfo is not None
    )
    assert parsed.auto in (None, "auto-reply", "bounce", "read-receipt")
    for attachment in parsed.attachments:
        assert "/" not in attachment.filename and "\\" not in attachment.filename
        assert len(attachment.filename) <= MAX_FILENAME_CHARS
        assert attachment.size >= 0
    assert classify(parsed, ["prevent-service@example.org"]) in (
        None,
        "own-mail",
        "auto-reply",
        "bounce",
        "read-receipt",
    )
    return parsed


@FUZZ
@given(st.binary(max_size=3_000))
def test_arbitrary_bytes(raw: bytes) -> None:
    check(raw)


@FUZZ
@given(st.binary(max_size=2_000))
def test_arbitrary_bytes_after_a_plausible_header(raw: bytes) -> None:
    check(b"From: a@example.org\r\nContent-Type: multipart/mixed; boundary=x\r\n" + raw)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A fixture with a few random cuts, insertions, overwrites and duplications."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["cut", "insert", "overwrite", "duplicate", "truncate"]))
        at = draw(st.integers(0, len(data)))
        if op == "cut":
            del data[at : at + draw(st.integers(1, 200))]
        elif op == "insert":
            data[at:at] = draw(
                st.one_of(
                    st.binary(min_size=1, max_size=40),
                    st.sampled_from(
                        [
                            b"\r\n",
                            b"\r\n\r\n",
                            b"--",
                            b"=?",
                            b"?=",
                            b"=?utf-8?B?",
                            b"=?x-unknown?Q?=FF=FE?=",
                            b"; charset=unicode_escape",
                            b'; boundary="',
                            b"Content-Type: multipart/mixed; boundary=z\r\n",
                            b"Content-Type: message/rfc822\r\n\r\n",
                            b"Content-Transfer-Encoding: base64\r\n",
                            b"filename*0*=utf-8''%E2%80;",
                            b"\x00",
                            b"\xff\xfe",
                            b"<script>",
                            b"<!--",
                        ]
                    ),
                )
            )
        elif op == "overwrite" and data:
            chunk = draw(st.binary(min_size=1, max_size=16))
            data[at : at + len(chunk)] = chunk
        elif op == "duplicate":
            data[at:at] = data[max(0, at - 300) : at]
        elif op == "truncate":
            del data[at:]
    return bytes(data)


@FUZZ
@given(mutated())
def test_mutated_real_world_shapes(raw: bytes) -> None:
    check(raw)


_header_values = st.one_of(
    st.text(max_size=80),
    st.builds(
        lambda cs, enc, body: f"=?{cs}?{enc}?{body}?=",
        st.sampled_from(["utf-8", "iso-8859-1", "gb2312", "x-unknown", "utf-7", "base64", ""]),
        st.sampled_from(["B", "Q", "b", "q", "X"]),
        st.text(alphabet="AZaz09+/=_?", max_size=30),
    ),
)


@st.composite
def structured(draw: st.DrawFn) -> bytes:
    """Messages built from header names that matter, with random values and MIME bodies."""
    names = [
        "From",
        "Sender",
        "Reply-To",
        "Subject",
        "Date",
        "Message-ID",
        "Auto-Submitted",
        "Precedence",
        "Return-Path",
        "Content-Type",
        "Content-Transfer-Encoding",
        "Content-Disposition",
        "References",
    ]
    lines = [
        f"{draw(st.sampled_from(names))}: {draw(_header_values)}"
        for _ in range(draw(st.integers(1, 10)))
    ]
    ctype = draw(
        st.sampled_from(
            [
                "text/plain; charset=utf-8",
                "text/html; charset=x-unknown",
                'multipart/mixed; boundary="b"',
                'multipart/alternative; boundary="b"',
                "multipart/report; report-type=delivery-status; boundary=b",
                "message/rfc822",
            ]
        )
    )
    parts = draw(
        st.lists(
            st.tuples(
                st.sampled_from(
                    [
                        "text/plain",
                        "text/html",
                        "message/rfc822",
                        "application/pdf",
                        "multipart/mixed",
                    ]
                ),
                st.sampled_from(["", "base64", "quoted-printable", "8bit", "x-uue"]),
                st.text(max_size=120),
            ),
            max_size=4,
        )
    )
    body = "".join(
        f"--b\r\nContent-Type: {t}\r\nContent-Transfer-Encoding: {e}\r\n\r\n{text}\r\n"
        for t, e, text in parts
    ) + draw(st.sampled_from(["--b--\r\n", "", "--b"]))
    head = "\r\n".join([*lines, f"Content-Type: {ctype}"])
    return (head + "\r\n\r\n" + body).encode("utf-8", "surrogatepass")


@FUZZ
@given(structured())
def test_structured_random_messages(raw: bytes) -> None:
    check(raw)


@FUZZ
@given(st.text(max_size=300))
def test_display_filename_never_yields_a_path(name: str) -> None:
    shown = display_filename(name)
    assert "/" not in shown and "\\" not in shown
    assert len(shown) <= MAX_FILENAME_CHARS
    assert not any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in shown)


# ---------------------------------------------------------------------------- indicators


@FUZZ
@given(st.text(max_size=2_000))
def test_suggestions_never_fail_on_arbitrary_text(text: str) -> None:
    found = suggest_from_text(text)
    # The policy's items, or the learned layer's "a more critical risk factor" (not a Form
    # option, so not in ALL).
    assert all(item in ALL or item is LEARNED_CRITICAL for item in found)
    assert len(found) == len(set(found))
    assert [s.indicator for s in explain(text)] == found
    describe(found, suggested=True)
    groups_of(found)


@FUZZ
@given(
    st.lists(
        st.one_of(
            st.sampled_from(form_choices()),
            st.sampled_from([i.label for i in ALL]),
            st.text(max_size=40),
        ),
        max_size=8,
    ),
    st.sampled_from([";", "; ", " ;", ";;"]),
    st.booleans(),
)
def test_form_answers_never_lose_an_option(options: list[str], sep: str, trailing: bool) -> None:
    answer = sep.join(options) + (";" if trailing else "")
    matched, unknown = from_form_answer(answer)
    # Each non-empty option is either matched or kept verbatim, the same as on its own.
    expected_matched: list[object] = []
    expected_unknown: list[str] = []
    for piece in (p.strip() for p in answer.split(";")):
        if not piece:
            continue
        alone, left = from_form_answer(piece)
        assert (len(alone), left) in ((1, []), (0, [piece]))
        expected_matched += alone
        expected_unknown += [u for u in left if u not in expected_unknown]
    assert set(matched) == set(expected_matched)
    assert unknown == expected_unknown


@FUZZ
@given(st.one_of(st.none(), st.text(max_size=500)))
def test_form_answer_never_fails(answer: str | None) -> None:
    matched, unknown = from_form_answer(answer)
    assert all(item in ALL for item in matched)
    assert all(isinstance(u, str) for u in unknown)
