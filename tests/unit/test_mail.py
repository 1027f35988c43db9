"""MIME parsing on hand-written fixtures, one per kind of real-world damage."""

from __future__ import annotations

from datetime import datetime, timezone
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest

from core.mail import (_parse_message, html_body, is_probably_email, parse_email, raw_header,
                       text_for_model)

MAIL_FIXTURES = sorted(
    p.name for p in (Path(__file__).parents[1] / "fixtures" / "mail").glob("*.eml"))


def test_plain_message_fields(mail_fixture):
    parsed = parse_email(mail_fixture("plain.eml"))
    assert parsed.subject == "Lunch on Friday?"
    assert parsed.sender == "alice@example.org"
    assert parsed.recipients == ["bob@example.com", "carol@example.com", "dave@example.net"]
    assert parsed.sent_at == datetime(2024, 9, 3, 8, 15, tzinfo=timezone.utc)
    assert parsed.message_id == "<lunch-1@example.org>"
    assert parsed.text.startswith("Hi Bob,\n\nShall we meet")
    assert ["Subject", "Lunch on Friday?"] in parsed.headers
    assert parsed.defects == []


def test_rfc2047_headers_and_quoted_printable(mail_fixture):
    parsed = parse_email(mail_fixture("rfc2047_headers.eml"))
    assert parsed.subject == "Grüße aus München €100"
    assert ["From", "Jürgen Müller <juergen@example.de>"] in parsed.headers
    assert "René <rene@example.fr>" in dict(parsed.headers)["To"]
    assert "Schöne Grüße, das Treffen kostet €100" in parsed.text
    # a soft line break joins the two halves of the word
    assert "damit sie zusammengefügt wird" in parsed.text


def test_base64_body(mail_fixture):
    parsed = parse_email(mail_fixture("base64_body.eml"))
    assert parsed.text == "Votre facture de septembre est disponible. Montant : 42,00 €."


def test_html_only_drops_scripts_styles_and_hidden_text(mail_fixture):
    parsed = parse_email(mail_fixture("html_only.eml"))
    assert "Huge savings" in parsed.text
    assert "Buy two widgets, get one free." in parsed.text
    assert "Cell one" in parsed.text and "Cell two" in parsed.text
    assert "Offer ends soon." in parsed.text
    assert "SHOULD NOT APPEAR" not in parsed.text
    assert "<" not in parsed.text


def test_alternative_prefers_plain_text(mail_fixture):
    parsed = parse_email(mail_fixture("alternative.eml"))
    assert parsed.text == "Plain version of the newsletter."


def test_alternative_falls_back_to_html_when_plain_is_empty():
    raw = (b"From: a@example.com\nSubject: s\nContent-Type: multipart/alternative; boundary=B\n\n"
           b"--B\nContent-Type: text/plain\n\n \n--B\nContent-Type: text/html\n\n"
           b"<p>Only the <i>HTML</i> has words</p>\n--B--\n")
    assert parse_email(raw).text == "Only the HTML has words"


def test_nested_message_rfc822_is_read_with_its_attachments(mail_fixture):
    parsed = parse_email(mail_fixture("nested_rfc822.eml"))
    assert "Please look at the attached message." in parsed.text
    assert "You have won a prize" in parsed.text
    assert "Send your bank details to claim the prize." in parsed.text
    assert parsed.attachments == [
        {"filename": "claim.pdf", "content_type": "application/pdf", "size": 48}]


def test_attachment_metadata_not_body(mail_fixture):
    parsed = parse_email(mail_fixture("attachments.eml"))
    assert parsed.text == "The quarterly report is attached."
    assert parsed.attachments == [
        {"filename": "report.xlsx", "content_type": "application/octet-stream", "size": 10},
        {"filename": "notes été.txt", "content_type": "text/plain", "size": 44},
    ]


def test_wrong_declared_charset_is_recovered_and_recorded(mail_fixture):
    parsed = parse_email(mail_fixture("wrong_charset.eml"))
    assert parsed.text == "Café crème brûlée."
    assert any("not valid in declared charset 'us-ascii'" in d for d in parsed.defects)


def test_unknown_charset_falls_back_and_is_recorded(mail_fixture):
    parsed = parse_email(mail_fixture("unknown_charset.eml"))
    assert parsed.text == "Bonjour, voilà le résumé."
    assert any("unknown charset 'x-made-up-charset'" in d for d in parsed.defects)


def test_missing_headers(mail_fixture):
    parsed = parse_email(mail_fixture("missing_headers.eml"))
    assert parsed.subject == ""
    assert parsed.sender is None and parsed.recipients == [] and parsed.sent_at is None
    assert parsed.message_id is None
    assert parsed.text.startswith("A message with no From")
    assert "missing headers: From, Date, Subject, Message-ID" in parsed.defects


def test_multipart_without_its_boundary_is_read_as_text(mail_fixture):
    parsed = parse_email(mail_fixture("broken_boundary.eml"))
    assert "Cheap watches here." in parsed.text
    assert "StartBoundaryNotFoundDefect" in parsed.defects


def test_multipart_without_closing_boundary_keeps_every_part(mail_fixture):
    parsed = parse_email(mail_fixture("unterminated_multipart.eml"))
    assert "First part survives." in parsed.text
    assert "Second part has no closing boundary." in parsed.text
    assert "CloseBoundaryNotFoundDefect" in parsed.defects


def test_eight_bit_bytes_in_headers(mail_fixture):
    parsed = parse_email(mail_fixture("eight_bit_headers.eml"))
    assert parsed.subject == "Réunion de l'équipe"  # latin-1 bytes
    assert ["From", "François <francois@example.fr>"] in parsed.headers  # UTF-8 bytes
    assert parsed.sender == "francois@example.fr"
    assert "8-bit bytes in Subject header" in parsed.defects


def test_empty_body(mail_fixture):
    parsed = parse_email(mail_fixture("empty_body.eml"))
    assert parsed.text == ""
    assert parsed.subject == "Nothing to say"
    assert "empty body" in parsed.defects


def test_malformed_message_id_is_kept_whole(mail_fixture):
    raw = mail_fixture("malformed_message_id.eml")
    assert parse_email(raw).message_id == "<Mail2L:2122738:fork@bulk.example>"
    assert raw_header(raw, "message-id") == "<Mail2L:2122738:fork@bulk.example>"


def test_invalid_base64_is_recorded_not_raised(mail_fixture):
    parsed = parse_email(mail_fixture("bad_base64.eml"))
    assert any("Base64" in d for d in parsed.defects)


def test_unreadable_date(mail_fixture):
    parsed = parse_email(mail_fixture("bad_date.eml"))
    assert parsed.sent_at is None
    assert any(d.startswith("unreadable Date header") for d in parsed.defects)


def test_crlf_line_endings_and_nul_bytes(mail_fixture):
    parsed = parse_email(mail_fixture("crlf_nul.eml"))
    assert parsed.subject == "CRLF and NUL"
    assert parsed.text == "Line one with a NUL byte.\nLine two."


def test_deep_nesting_is_cut_off_not_recursed_forever():
    depth = 60
    head = b"From: a@example.com\nSubject: deep\n"
    body = b"".join(
        b"Content-Type: multipart/mixed; boundary=L%d\n\n--L%d\n" % (i, i) for i in range(depth))
    body += b"Content-Type: text/plain\n\nbottom\n"
    body += b"".join(b"--L%d--\n" % i for i in reversed(range(depth)))
    parsed = parse_email(head + body)
    assert any("nested deeper" in d for d in parsed.defects)


@pytest.mark.parametrize("raw", [
    b"", b"\x00\xff\xfe garbage", b"Content-Type: multipart/mixed\n\n--\n--\n",
    b"Subject: =?utf-8?q?unterminated\n\nbody", b"From: <<<@@@>>>\nTo: ,,,;;\n\nx",
    b"Content-Type: text/plain; charset=\"\n\nx", b"Content-Transfer-Encoding: x-uuencode\n\n!",
])
def test_never_raises_on_garbage(raw):
    parsed = parse_email(raw)
    assert isinstance(parsed.text, str) and isinstance(parsed.defects, list)


def test_text_for_model_truncates_but_keeps_subject():
    assert text_for_model("Hello", "x" * 100, max_chars=20) == "Hello\n\n" + "x" * 13


def test_is_probably_email():
    assert is_probably_email(b"Received: from x\nSubject: y\n\nbody")
    assert is_probably_email(b"From someone@example.com Mon Jul 29 11:28:02 2002\nSubject: y")
    assert not is_probably_email(b"# A README\n\nNot mail.")


def test_headers_are_stored_as_policy_default_renders_them():
    raw = (b"Received: from a.example\r\n\tby b.example;  Mon, 2 Sep 2024 08:15:00 +0000\r\n"
           b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= and  plain\t text\r\n"
           b"X-Tricky: tabs\tand  double  spaces (and comments) \"quotes\" =? not a word\r\n"
           b"X-Encoded: before =?iso-8859-1?q?caf=E9?= after\r\n"
           b"From: \"Doe, Jane\" <jane@example.org>\r\n"
           b"To: =?utf-8?q?J=C3=BCrgen?= <j@example.de>, (comment) bob@example.com\r\n"
           b"Date: Mon, 2 Sep 2024 08:15:00 GMT\r\n"
           b"Message-ID: <id-1@example.org>\r\nMIME-Version: 1.0 (produced by hand)\r\n"
           b"Content-Type: text/plain; charset=us-ascii\r\n\r\nbody\r\n")
    message = BytesParser(policy=policy.default).parsebytes(raw)
    expected = [[name, str(policy.default.header_fetch_parse(name, value))]
                for name, value in message.raw_items()]
    parsed = parse_email(raw)
    assert parsed.headers == expected
    assert parsed.subject == "Grüße and  plain\t text"
    assert parsed.recipients == ["j@example.de", "bob@example.com"]


@pytest.mark.parametrize("name", MAIL_FIXTURES)
def test_message_class_answers_as_policy_default_message(mail_fixture, name):
    """The parser's message class only remembers parsed headers: every answer is the same."""
    raw = mail_fixture(name)
    ours = list(_parse_message(raw).walk())
    reference = list(BytesParser(policy=policy.default).parsebytes(raw).walk())
    assert len(ours) == len(reference)
    for part, expected in zip(ours, reference):
        for getter in ("get_content_type", "get_content_charset", "get_filename",
                       "get_content_disposition", "get_boundary", "is_multipart"):
            assert getattr(part, getter)() == getattr(expected, getter)(), getter
        assert part.get_payload(decode=True) == expected.get_payload(decode=True)
        assert [str(d) for d in part.defects] == [str(d) for d in expected.defects]


def test_html_body_is_the_html_alternative(mail_fixture):
    assert html_body(mail_fixture("alternative.eml")).strip() == (
        "<p>HTML version of the newsletter.</p>")
    assert html_body(mail_fixture("plain.eml")) is None


def test_mime_parameters_are_read_past_runs_of_empty_ones_and_bounded():
    """Spam's ``text/html ; ; ; ...`` (thousands of empty parameters) keeps its charset; a
    parameter list is read up to MAX_MIME_PARAMETERS entries (the stdlib parser's time grows
    with the square of their number: the import bench measures it)."""
    from core.mail import MAX_MIME_PARAMETERS

    body = "caf\u00e9 cr\u00e8me".encode("latin-1")
    empty = (b"Subject: s\r\nContent-Type: text/plain ;" + b" ;" * 5000
             + b" charset=iso-8859-1\r\n\r\n" + body + b"\r\n")
    assert parse_email(empty).text == "caf\u00e9 cr\u00e8me"

    many = "".join(f"; p{n}=v{n}" for n in range(MAX_MIME_PARAMETERS + 500))
    message = _parse_message(
        f"Subject: s\r\nContent-Type: text/plain; charset=utf-8{many}\r\n\r\nbody\r\n".encode())
    params = dict(message["Content-Type"].params)
    assert params["charset"] == "utf-8" and "p0" in params
    assert len(params) == MAX_MIME_PARAMETERS
    assert parse_email(message.as_bytes()).text == "body"


def test_a_long_recipient_list_is_read_whole():
    """Spam to hundreds of addresses at once: a list too long for the stdlib's structured
    parser (its time grows fast with the addresses) is read by email.utils.getaddresses."""
    names = [f"User {n} <user{n}@example.org>" for n in range(300)]
    raw = ("From: =?utf-8?q?J=C3=BCrgen?= <j@example.de>\r\nTo: " + ",\r\n\t".join(names)
           + "\r\nCc: =?utf-8?q?Ren=C3=A9?= <rene@example.fr>, " + ", ".join(
               f"c{n}@example.net" for n in range(200))
           + "\r\nSubject: hello\r\n\r\nbody\r\n").encode()
    parsed = parse_email(raw)
    assert parsed.recipients == ([f"user{n}@example.org" for n in range(300)]
                                 + ["rene@example.fr"] + [f"c{n}@example.net" for n in range(200)])
    headers = dict(parsed.headers)
    assert headers["To"].startswith("User 0 <user0@example.org>,")
    assert headers["To"].endswith("User 299 <user299@example.org>")
    assert headers["Cc"].startswith("René <rene@example.fr>, c0@example.net")
    assert parsed.sender == "j@example.de"
