"""The e-mail parser and loop-protection classification on the shapes real mail comes in.

Fixtures in tests/fixtures/mail/ are invented messages written by hand (example.org only);
smaller cases are built inline so the bytes under test are visible next to the assertion.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from connectors.base import OutboundMessage
from service.errors import InputError
from service.intake.mailparse import (
    MAX_FILENAME_CHARS,
    MAX_SUBJECT_CHARS,
    ParsedMail,
    classify,
    display_filename,
    html_to_text,
    parse_message,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "mail"
OWN = ["prevent-service@example.org"]


def fixture(name: str) -> ParsedMail:
    return parse_message((FIXTURES / name).read_bytes())


def mail(*headers: str, body: bytes | str = b"Hello.", crlf: bool = False) -> bytes:
    """A message from header lines and a body; From/Subject added unless given."""
    names = {h.split(":", 1)[0].lower() for h in headers}
    lines = list(headers)
    if "from" not in names:
        lines.insert(0, "From: Kim Reporter <kim.reporter@example.org>")
    if "subject" not in names:
        lines.append("Subject: A concern")
    head = "\n".join(lines).encode("utf-8", "surrogateescape")
    data = body.encode("utf-8") if isinstance(body, str) else body
    raw = head + b"\n\n" + data
    return raw.replace(b"\n", b"\r\n") if crlf else raw


# ---------------------------------------------------------------------------- structure


def test_multipart_alternative_prefers_plain_text_and_decodes_quoted_printable() -> None:
    parsed = fixture("gmail_forward.eml")
    assert parsed.text.startswith("Forwarding as discussed.\n\n---------- Forwarded message")
    assert "footage of a beheading on his phone and said “they deserved it”." in parsed.text
    assert "gmail_quote" not in parsed.text  # the HTML alternative was not used
    assert parsed.message_id == "<CAB1x2y3z4FwdExample0001@mail.example.org>"
    assert parsed.from_name == "Jo Assessor"
    assert parsed.from_address == "jo.assessor@example.org"
    assert parsed.date == datetime(2026, 2, 3, 14, 2, 33, tzinfo=UTC)
    assert parsed.defects == ()


def test_alternative_with_empty_plain_part_falls_back_to_html() -> None:
    raw = mail(
        'Content-Type: multipart/alternative; boundary="b"',
        body="--b\nContent-Type: text/plain\n\n  \n--b\nContent-Type: text/html\n\n"
        "<p>He talks about joining them.</p>\n--b--\n",
    )
    assert parse_message(raw).text == "He talks about joining them."


def test_html_only_body_is_readable_text_without_script_or_style() -> None:
    html = (
        "<html><head><title>Title text</title><style>p {color: red}</style>"
        "<script>document.write('head script')</script></head><body>"
        "<p>Dear DSP,</p><p>He said &ldquo;join us&rdquo; &amp; left.<br>Second&nbsp;line</p>"
        "<ul><li>one</li><li>two</li></ul>"
        "<table><tr><td>Name</td><td>Sam</td></tr><tr><td>Group</td><td>B</td></tr></table>"
        '<a href="https://eur01.safelinks.protection.outlook.com/?url=https%3A%2F%2F'
        'example.org%2Fpage&amp;data=x">this site</a>'
        "<script>var s = '<p>in script</p>';</script> <noscript>shown</noscript></body></html>"
    )
    raw = mail(
        "Content-Type: text/html; charset=utf-8",
        "Content-Transfer-Encoding: base64",
        body=base64.encodebytes(html.encode()).decode(),
    )
    parsed = parse_message(raw)
    assert parsed.text == (
        "Dear DSP,\n\nHe said “join us” & left.\nSecond line\n\n- one\n- two\n\n"
        "Name Sam\nGroup B\n\nthis site (https://example.org/page) shown"
    )
    for hidden in ("Title text", "color: red", "head script", "in script", "safelinks"):
        assert hidden not in parsed.text


def test_outlook_html_lines_and_blank_paragraphs_keep_their_shape() -> None:
    html = (
        '<p class="MsoNormal">Hi,<o:p></o:p></p><p class="MsoNormal"><o:p>&nbsp;</o:p></p>'
        '<p class="MsoNormal">Line one<o:p></o:p></p><p class="MsoNormal">Line two</p>'
        "<![if !supportLists]>·<![endif]>item"
    )
    assert html_to_text(html) == "Hi,\n\nLine one\nLine two\n·item"


def test_html_with_unclosed_head_still_yields_the_body() -> None:
    assert html_to_text("<head><title>t</title><body><p>the account</p>") == "the account"


def test_nested_multiparts_collect_inline_text_and_list_attachments() -> None:
    raw = mail(
        'Content-Type: multipart/mixed; boundary="outer"',
        body=(
            "--outer\n"
            'Content-Type: multipart/related; boundary="rel"\n\n'
            "--rel\n"
            'Content-Type: multipart/alternative; boundary="alt"\n\n'
            "--alt\nContent-Type: text/plain; charset=utf-8\n\nPart one.\n"
            "--alt\nContent-Type: text/html\n\n<p>Part one (html).</p>\n--alt--\n"
            "--rel\nContent-Type: image/png\nContent-ID: <logo>\n"
            "Content-Transfer-Encoding: base64\n\niVBORw0KGgo=\n--rel--\n"
            "--outer\nContent-Type: text/plain\n\nPart two, after an image.\n"
            "--outer\nContent-Type: text/plain\nContent-Disposition: attachment; "
            'filename="notes.txt"\n\nnot body text\n'
            "--outer--\n"
        ),
    )
    parsed = parse_message(raw)
    assert parsed.text == "Part one.\n\nPart two, after an image."
    assert [(a.filename, a.content_type, a.size) for a in parsed.attachments] == [
        ("attachment", "image/png", 8),
        ("notes.txt", "text/plain", 13),
    ]


def test_format_flowed_lines_are_joined() -> None:
    parsed = fixture("list_concern.eml")
    assert parsed.text == (
        "A learner has dropped his old friends and now spends breaks with a new group of "
        'friends who talk about a "race war".'
    )


def test_whitespace_is_normalised_but_paragraphs_kept() -> None:
    body = "First line   \nsecond\x00 line\x07\n\n\n\n\nNew\xa0paragraph.\u200b\n\n"
    parsed = parse_message(mail("Content-Type: text/plain; charset=utf-8", body=body, crlf=True))
    assert parsed.text == "First line\nsecond line\n\nNew paragraph."


# ---------------------------------------------------------------------------- headers


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("=?UTF-8?B?Q29uY2VybiDigJMgw6l0w6k=?=", "Concern – été"),
        ("=?ISO-8859-1?Q?Caf=E9_r=E9union?=", "Café réunion"),
        # cp1252 curly quotes labelled ISO-8859-1, as Outlook does
        ("=?iso-8859-1?q?=93quoted=94?=", "“quoted”"),
        # cp1252 bytes wrongly labelled UTF-8
        ("=?utf-8?q?Caf=E9?=", "Café"),
        # an unknown charset: decoded as UTF-8 rather than dropped
        ("=?x-unknown?q?Gr=C3=BC=C3=9Fe?=", "Grüße"),
        ("=?gb2312?B?xOO6ww==?=", "你好"),
        # a character split across two encoded words, words joined without the space
        ("=?utf-8?B?w6k=?= =?utf-8?B?4oCT?=", "é–"),
        ("=?utf-8?q?a?= plain =?utf-8?q?b?=", "a plain b"),
        # broken encoded words stay as written
        ("=?utf-8?B?!!!?= tail", "=?utf-8?B?!!!?= tail"),
        ("Fwd:\tmany   spaces\x07 and a bell", "Fwd: many spaces and a bell"),
    ],
)
def test_subject_decoding_tolerates_odd_and_wrong_charsets(header: str, expected: str) -> None:
    assert parse_message(mail(f"Subject: {header}")).subject == expected


def test_raw_8bit_headers_are_decoded_as_utf8_then_cp1252() -> None:
    raw = mail("Subject: PLACEHOLDER1", "From: PLACEHOLDER2 <zoe@example.org>")
    raw = raw.replace(b"PLACEHOLDER1", "Grüße".encode()).replace(
        b"PLACEHOLDER2", "Zoë Smith".encode("cp1252")
    )
    parsed = parse_message(raw)
    assert parsed.subject == "Grüße"
    assert parsed.from_name == "Zoë Smith"


def test_long_subject_is_one_bounded_line() -> None:
    parsed = parse_message(mail("Subject: " + "word " * 100_000))
    assert len(parsed.subject) <= MAX_SUBJECT_CHARS
    assert "\n" not in parsed.subject


@pytest.mark.parametrize(
    ("header", "name", "address"),
    [
        (
            "=?iso-8859-1?q?Zo=EB_Smith?= <Zoe.Smith@Example.ORG>",
            "Zoë Smith",
            "zoe.smith@example.org",
        ),
        ('"Smith, Jo" <jo.smith@example.org>', "Smith, Jo", "jo.smith@example.org"),
        ("jo.smith@example.org (Jo Smith)", "Jo Smith", "jo.smith@example.org"),
        ("<jo.smith@example.org>", "", "jo.smith@example.org"),
        ("Just A Name", "Just A Name", None),
        ("Bad <<jo@@example.org>>", "Bad", None),
        ("undisclosed-recipients:;", "undisclosed-recipients", None),
    ],
)
def test_from_address_is_lower_case_addr_spec_or_none(
    header: str, name: str, address: str | None
) -> None:
    parsed = parse_message(mail(f"From: {header}", body="Some text."))
    assert (parsed.from_name, parsed.from_address) == (name, address)


def test_sender_header_is_used_when_from_has_no_address() -> None:
    parsed = parse_message(mail("From: Reception Desk", "Sender: Desk@Example.org"))
    assert parsed.from_name == "Reception Desk"
    assert parsed.from_address == "desk@example.org"


def test_reply_to_and_references() -> None:
    parsed = parse_message(
        mail(
            "Reply-To: Other Person <Other@example.org>",
            "In-Reply-To: <ack-PRV-2026-0001@prevent.example.org>",
            "References: <a@example.org>\n <ack-PRV-2026-0001@prevent.example.org>",
        )
    )
    assert parsed.reply_to == "other@example.org"
    assert parsed.references == ("<ack-PRV-2026-0001@prevent.example.org>", "<a@example.org>")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("<abc.123@example.org>", "<abc.123@example.org>"),
        ("  abc.123@example.org  ", "<abc.123@example.org>"),
        ("(comment) <abc.123@example.org> (more)", "<abc.123@example.org>"),
        ("garbage id with spaces", None),
        ("<no-at-sign>", None),
        ("", None),
    ],
)
def test_message_id_normalised_or_none(header: str, expected: str | None) -> None:
    assert parse_message(mail(f"Message-ID: {header}")).message_id == expected


def test_missing_message_id_is_none() -> None:
    assert parse_message(mail()).message_id is None


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            "Mon, 2 Feb 2026 10:00:00 +0100",
            datetime(2026, 2, 2, 10, tzinfo=timezone(timedelta(hours=1))),
        ),
        ("Mon, 2 Feb 2026 10:00:00 -0000", datetime(2026, 2, 2, 10, tzinfo=UTC)),
        ("2 Feb 2026 10:00:00", datetime(2026, 2, 2, 10, tzinfo=UTC)),
        ("Mon, 2 Feb 2026 10:00:00 GMT", datetime(2026, 2, 2, 10, tzinfo=UTC)),
        ("not a date", None),
        ("Mon, 99 Feb 2026 10:00:00 +0000", None),
        ("Mon, 2 Feb 99999 10:00:00 +0000", None),
    ],
)
def test_date_is_aware_or_none(header: str, expected: datetime | None) -> None:
    parsed = parse_message(mail(f"Date: {header}"))
    assert parsed.date == expected
    if parsed.date is not None:
        assert parsed.date.tzinfo is not None


# ---------------------------------------------------------------------------- charsets in bodies


@pytest.mark.parametrize(
    ("charset", "data", "expected"),
    [
        ("utf-8", "Zoë said “no”".encode(), "Zoë said “no”"),
        ("iso-8859-1", "Zoë said “no”".encode("cp1252"), "Zoë said “no”"),
        ("utf-8", "Zoë said “no”".encode("cp1252"), "Zoë said “no”"),  # wrong label
        ("x-unknown", "Zoë said".encode(), "Zoë said"),
        ("gb2312", "你好，老师".encode("gb2312"), "你好，老师"),
        ("unicode_escape", b"\\u0041 literal", "\\u0041 literal"),  # not a mail charset
        ("us-ascii", "Zoë".encode(), "Zoë"),
    ],
)
def test_body_charset_fallbacks(charset: str, data: bytes, expected: str) -> None:
    raw = mail(f'Content-Type: text/plain; charset="{charset}"', body=data)
    assert parse_message(raw).text == expected


def test_unknown_body_charset_is_named_as_a_defect() -> None:
    parsed = parse_message(mail("Content-Type: text/plain; charset=x-unknown", body=b"caf\xe9"))
    assert parsed.text == "café"
    assert "unknown-charset" in parsed.defects


def test_html_meta_charset_is_used_when_the_header_has_none() -> None:
    body = b'<meta charset="windows-1251"><p>' + "Привет".encode("cp1251") + b"</p>"
    assert parse_message(mail("Content-Type: text/html", body=body)).text == "Привет"


# ---------------------------------------------------------------------------- attachments


def test_attachment_names_are_display_names_never_paths() -> None:
    parsed = fixture("attachments.eml")
    assert parsed.text == "Notes attached."
    assert [(a.filename, a.size) for a in parsed.attachments] == [
        ("passwd", 32),
        ("y.docx", 10),
        ("Antworten März.xlsx", 4),
        ("Dies ist ein Bild.jpg", 13),
        ("reportfdp.exe", 5),  # the right-to-left override that disguised it is gone
    ]
    assert parsed.attachments[1].content_type.endswith("wordprocessingml.document")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\x\\y.docx", "y.docx"),
        ("C:evil.txt", "evil.txt"),
        ("..", ""),
        ("/", ""),
        ("tab\tand\nnewline\x00.txt", "tab and newline.txt"),
        ("=?utf-8?q?M=C3=A4rz.pdf?=", "März.pdf"),
        ("a\u202etxt.exe", "atxt.exe"),
        (None, ""),
    ],
)
def test_display_filename(name: str | None, expected: str) -> None:
    assert display_filename(name) == expected


def test_display_filename_is_bounded_and_keeps_the_extension() -> None:
    name = display_filename("x" * 5000 + ".docx")
    assert len(name) <= MAX_FILENAME_CHARS
    assert name.endswith(".docx")


# ---------------------------------------------------------------------------- forwarded mail


def test_forwarded_outlook_message_keeps_forwarder_and_finds_original_sender() -> None:
    parsed = fixture("outlook_forward.eml")
    assert parsed.forwarded is True
    assert parsed.forwarded_from == "sam.learner@example.org"
    assert parsed.from_address == "priya.tutor@example.org"
    assert parsed.subject == "FW: help"
    assert "a group on Telegram and says I should join them" in parsed.text


def test_forwarded_gmail_message() -> None:
    parsed = fixture("gmail_forward.eml")
    assert (parsed.forwarded, parsed.forwarded_from) == (True, "alex.employer@example.org")


def test_message_forwarded_as_attachment_adds_its_text_and_sender() -> None:
    parsed = fixture("forward_as_attachment.eml")
    assert parsed.forwarded is True
    assert parsed.forwarded_from == "chris.colleague@example.org"
    assert parsed.text.startswith("See the attached e-mail from Chris")
    assert "Subject: Worried about a learner in Group B" in parsed.text
    assert 'told others that "violence is the only answer".' in parsed.text
    assert "alert(1)" not in parsed.text
    (attachment,) = parsed.attachments
    assert attachment.content_type == "message/rfc822"
    assert attachment.filename == "Worried about a learner in Group B.eml"
    assert attachment.size > 0


def test_base64_encoded_attached_message_is_still_read() -> None:
    inner = b"From: a@example.org\nSubject: inner\n\nThe inner account.\n"
    raw = mail(
        'Content-Type: multipart/mixed; boundary="b"',
        body=b"--b\nContent-Type: text/plain\n\nouter\n--b\nContent-Type: message/rfc822\n"
        b"Content-Transfer-Encoding: base64\n\n" + base64.encodebytes(inner) + b"--b--\n",
    )
    parsed = parse_message(raw)
    assert "The inner account." in parsed.text
    assert parsed.forwarded_from == "a@example.org"


def test_reply_with_original_message_block_is_not_a_forward() -> None:
    raw = mail(
        "Subject: RE: We have received your concern PRV-2026-0003",
        body="More detail: it happened again today.\n\n-----Original Message-----\n"
        "From: Prevent Service <prevent-service@example.org>\nSent: Monday\n",
    )
    parsed = parse_message(raw)
    assert (parsed.forwarded, parsed.forwarded_from) == (False, None)


def test_original_message_marker_without_reply_subject_is_a_forward() -> None:
    raw = mail(
        "Subject: concern",
        body="See below.\n\n-----Original Message-----\n"
        "From: Pat <pat@example.org>\nSent: Monday\n",
    )
    assert parse_message(raw).forwarded_from == "pat@example.org"


def test_plain_message_is_not_forwarded() -> None:
    parsed = parse_message(mail(body="From: the start of term he has changed."))
    assert (parsed.forwarded, parsed.forwarded_from) == (False, None)


# ---------------------------------------------------------------------------- automatic mail


@pytest.mark.parametrize(
    ("name", "auto"),
    [
        ("outlook_auto_reply.eml", "auto-reply"),
        ("precedence_bulk.eml", "auto-reply"),
        ("exchange_ndr.eml", "bounce"),
        ("rfc3464_bounce.eml", "bounce"),
        ("read_receipt.eml", "read-receipt"),
        # Deliberately a concern: Precedence: list, List-Id and X-Auto-Response-Suppress are
        # what a group/list server adds to a person's mail.
        ("list_concern.eml", None),
        ("outlook_forward.eml", None),
        ("gmail_forward.eml", None),
        ("forward_as_attachment.eml", None),
        ("attachments.eml", None),
        ("broken_mime.eml", None),
    ],
)
def test_automatic_mail_is_recognised(name: str, auto: str | None) -> None:
    parsed = fixture(name)
    assert parsed.auto == auto
    assert classify(parsed, OWN) == auto


def test_exchange_ndr_names_the_alert_it_bounced() -> None:
    assert fixture("exchange_ndr.eml").bounce_of == ("<alert-PRV-2026-0007@prevent.example.org>",)


def test_rfc3464_bounce_names_our_message_from_its_headers_part() -> None:
    assert fixture("rfc3464_bounce.eml").bounce_of == ("<ack-PRV-2026-0008@prevent.example.org>",)


def test_bounce_of_our_own_outbound_message() -> None:
    sent = OutboundMessage(
        message_id="<alert-PRV-2026-0042@prevent.example.org>",
        sender="prevent-service@example.org",
        to=("dsp@example.org",),
        subject="New safeguarding concern PRV-2026-0042",
        text="A new concern.",
        html="<p>A new concern.</p>",
    ).to_email()
    raw = (
        b"From: Mail Delivery Subsystem <mailer-daemon@example.org>\n"
        b"To: prevent-service@example.org\nSubject: Delivery Status Notification (Failure)\n"
        b"MIME-Version: 1.0\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="r"\n\n'
        b"--r\nContent-Type: text/plain\n\n"
        b"Delivery to the following recipient failed permanently.\n"
        b"--r\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.org\n\n"
        b"Final-Recipient: rfc822; dsp@example.org\nAction: failed\nStatus: 5.1.1\n"
        b"--r\nContent-Type: message/rfc822\n\n" + sent.as_bytes() + b"\n--r--\n"
    )
    parsed = parse_message(raw)
    assert parsed.auto == "bounce"
    assert parsed.bounce_of == ("<alert-PRV-2026-0042@prevent.example.org>",)
    assert parsed.forwarded is False  # the returned original is not a forwarded concern


@pytest.mark.parametrize(
    ("headers", "auto"),
    [
        (["Auto-Submitted: auto-generated"], "auto-reply"),
        (["Auto-Submitted: auto-replied (vacation)"], "auto-reply"),
        (["Auto-Submitted: No"], None),
        (["X-Autoreply: yes"], "auto-reply"),
        (["X-Autorespond: on"], "auto-reply"),
        (["Precedence: junk"], "auto-reply"),
        (["Precedence: list", "List-Id: <staff.example.org>"], None),
        (["X-Auto-Response-Suppress: All"], None),  # a request to us, not a sign of a robot
        (["Subject: Out of Office: back Monday"], None),  # a person may write that subject
        (["Subject: Out of Office: back Monday", "X-Auto-Response-Suppress: All"], "auto-reply"),
        (["Subject: Automatic reply: concern", "Return-Path: <>"], "auto-reply"),
        (["X-MS-Exchange-Message-Is-Ndr:", "Subject: Undeliverable: x"], "bounce"),
        (["From: postmaster@example.org", "Subject: Undeliverable: concern"], "bounce"),
        (["From: postmaster@example.org", "Subject: A question about a learner"], None),
        (["From: MAILER-DAEMON (Mail Delivery System)", "Subject: failure notice"], "bounce"),
        (["Return-Path: <>", "Subject: Delivery Status Notification (Failure)"], "bounce"),
        (
            ['Content-Type: multipart/report; report-type=feedback-report; boundary="x"'],
            "auto-reply",
        ),
    ],
)
def test_auto_headers(headers: list[str], auto: str | None) -> None:
    parsed = parse_message(mail(*headers, body="Some text."))
    assert parsed.auto == auto


def test_auto_subject_with_null_sender_bounce_detected_from_ndr_text() -> None:
    raw = mail(
        "From: postmaster@example.org",
        "Subject: Notification",
        body="Delivery has failed to these recipients or groups: dsp@example.org",
    )
    assert parse_message(raw).auto == "bounce"


# ---------------------------------------------------------------------------- classify


def test_own_address_is_own_mail_case_insensitively() -> None:
    parsed = parse_message(
        mail(
            "From: Prevent Service <Prevent-Service@EXAMPLE.org>", "Auto-Submitted: auto-generated"
        )
    )
    assert classify(parsed, ["Prevent <prevent-service@example.org>"]) == "own-mail"
    assert classify(parsed, ["PREVENT-SERVICE@example.org"]) == "own-mail"


def test_a_person_writing_as_the_shared_address_is_not_own_mail() -> None:
    parsed = parse_message(mail("From: Safeguarding <prevent-service@example.org>"))
    assert classify(parsed, ["prevent-service@example.org"]) is None
    ours = parse_message(
        mail(
            "From: <prevent-service@example.org>",
            "Message-ID: <alert.0123456789abcdef01234567@example.org>",
        )
    )
    assert classify(ours, ["prevent-service@example.org"]) == "own-mail"


def test_our_auto_generated_mail_from_another_address_of_our_domain_is_own_mail() -> None:
    sent = OutboundMessage(
        message_id="<ack-PRV-2026-0005@prevent.example.org>",
        sender="Prevent Service <noreply@example.org>",
        to=("safeguarding@example.org",),
        subject="We have received your concern: PRV-2026-0005",
        text="Thank you.",
        html="<p>Thank you.</p>",
    ).to_email()
    parsed = parse_message(sent.as_bytes())
    assert parsed.auto == "auto-reply"
    assert classify(parsed, ["safeguarding@example.org"]) == "own-mail"
    assert classify(parsed, ["safeguarding@example.net"]) == "auto-reply"


def test_person_mail_from_our_domain_is_not_own_mail() -> None:
    parsed = parse_message(mail("From: colleague@example.org"))
    assert classify(parsed, ["safeguarding@example.org"]) is None


def test_classify_ignores_junk_in_own_addresses() -> None:
    parsed = parse_message(mail())
    assert classify(parsed, ["", "not an address", "@"]) is None


# ---------------------------------------------------------------- hostile and broken input


def test_five_megabyte_plain_body_is_bounded() -> None:
    body = ("The learner said something. " * 40 + "\n") * 4_500
    assert len(body) > 5_000_000
    parsed = parse_message(mail(body=body), max_text_chars=50_000)
    assert parsed.text_truncated is True
    assert 49_000 < len(parsed.text) <= 50_000
    assert parsed.text.startswith("The learner said something.")


def test_five_megabyte_html_body_is_bounded() -> None:
    body = '<p class="MsoNormal">He said <b>something</b>.<o:p></o:p></p>\n' * 90_000
    assert len(body) > 5_000_000
    parsed = parse_message(mail("Content-Type: text/html", body=body))
    assert parsed.text_truncated is True
    assert 90_000 < len(parsed.text) <= 100_000
    assert parsed.text.startswith("He said something.\nHe said something.")


def test_five_megabyte_base64_attachment_is_measured_not_kept() -> None:
    blob = bytes(range(256)) * 20_480  # 5 MiB
    raw = mail(
        'Content-Type: multipart/mixed; boundary="b"',
        body=b"--b\nContent-Type: text/plain\n\nSee attached.\n--b\n"
        b'Content-Type: application/pdf; name="big.pdf"\nContent-Transfer-Encoding: base64\n\n'
        + base64.encodebytes(blob)
        + b"--b--\n",
    )
    parsed = parse_message(raw)
    assert parsed.text == "See attached."
    assert [(a.filename, a.size) for a in parsed.attachments] == [("big.pdf", len(blob))]
    assert parsed.text_truncated is False


def test_short_body_is_not_truncated() -> None:
    assert parse_message(mail(body="short")).text_truncated is False


def test_broken_mime_still_gives_the_text() -> None:
    parsed = fixture("broken_mime.eml")
    assert parsed.text.startswith("The learner said he wants to join the far-right group")
    assert parsed.message_id is None
    assert parsed.date is None
    assert "close-boundary-not-found" in parsed.defects
    assert "header-line-without-colon" in parsed.defects
    assert "lost into the body" not in parsed.text  # the header after the stray line stays one
    assert any("base64" in d for d in parsed.defects)
    assert all(len(d) < 60 and " " not in d for d in parsed.defects)


def test_multipart_without_boundary_is_read_as_text() -> None:
    parsed = parse_message(mail("Content-Type: multipart/mixed", body="Just the words."))
    assert parsed.text == "Just the words."
    assert "multipart-without-parts" in parsed.defects


def test_missing_boundaries_in_the_body() -> None:
    raw = mail('Content-Type: multipart/mixed; boundary="nowhere"', body="Words, no parts.")
    parsed = parse_message(raw)
    assert isinstance(parsed, ParsedMail)
    assert "start-boundary-not-found" in parsed.defects


def _nested(depth: int) -> bytes:
    body = b""
    for level in range(depth):
        body += b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (level, level)
    body += b"Content-Type: text/plain\n\nthe innermost words\n"
    for level in reversed(range(depth)):
        body += b"--b%d--\n" % level
    return b"From: a@example.org\nSubject: deep\nMIME-Version: 1.0\n" + body


@pytest.mark.parametrize("depth", [30, 2_000])
def test_deeply_nested_multiparts_are_cut_off_not_fatal(depth: int) -> None:
    parsed = parse_message(_nested(depth))
    assert "nesting-too-deep" in parsed.defects
    assert parsed.from_address == "a@example.org"


def test_shallow_nesting_is_followed() -> None:
    assert parse_message(_nested(8)).text == "the innermost words"


def test_header_line_without_colon_does_not_hide_the_headers_after_it() -> None:
    raw = b"Subject: x\nthis line has no colon\nFrom: a@example.org\n\nBody.\n"
    parsed = parse_message(raw)
    assert (parsed.subject, parsed.from_address, parsed.text) == ("x", "a@example.org", "Body.")
    assert "header-line-without-colon" in parsed.defects


def test_obsolete_space_before_colon_in_header_names() -> None:
    raw = b"From  : Jo Doe <jo@example.org>\nSubject     : Saying Hello\n\nHello.\n"
    parsed = parse_message(raw)
    assert (parsed.from_address, parsed.subject) == ("jo@example.org", "Saying Hello")


def test_body_lines_without_a_blank_line_before_them_are_kept() -> None:
    parsed = parse_message(b"From: a@example.org\nSubject: x\nno blank line before this body\n")
    assert parsed.text == "no blank line before this body"


def test_many_headers_and_an_mbox_from_line() -> None:
    raw = b"From sender@example.org Mon Feb  2 10:00:00 2026\n" + b"X-Junk: 1\n" * 50_000
    raw += b"From: a@example.org\nSubject: many\n\nBody.\n"
    parsed = parse_message(raw)
    assert (parsed.from_address, parsed.subject, parsed.text) == ("a@example.org", "many", "Body.")


def test_leading_blank_lines_and_bom_are_tolerated() -> None:
    parsed = parse_message(b"\xef\xbb\xbf\r\n\r\nFrom: a@example.org\r\nSubject: s\r\n\r\nBody.")
    assert parsed.text == "Body."


def test_body_without_from_is_still_parsed() -> None:
    parsed = parse_message(b"To: safeguarding@example.org\nSubject: s\n\nAn anonymous note.\n")
    assert (parsed.from_address, parsed.text) == (None, "An anonymous note.")


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"", "empty"),
        (b"  \r\n\t\r\n", "empty"),
        (bytes(range(256)) * 64, "header block"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200), "header block"),
        (b"Hello, this is just a line of text\nwith no headers at all\n", "header block"),
        (b"X-Custom: only\nX-Other: headers\n\nbody", "no e-mail headers"),
        (b"Subject: secret words\n\n", "neither a sender"),
        (b"To: a@example.org\n", "neither a sender"),
    ],
)
def test_not_an_email_raises_input_error_without_content(raw: bytes, why: str) -> None:
    with pytest.raises(InputError, match=why) as caught:
        parse_message(raw)
    assert "secret" not in str(caught.value)


def test_non_bytes_input_is_an_input_error() -> None:
    with pytest.raises(InputError, match="bytes"):
        parse_message("From: a@example.org\n\nx")  # type: ignore[arg-type]
