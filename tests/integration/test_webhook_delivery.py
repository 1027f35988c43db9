"""Webhook deliveries as each provider really posts them, on real PostgreSQL and Redis:
big messages, refusals that stop retries, exact bytes, messages the corpus shows are hard
to rebuild, the same text through every format, retries told apart from look-alikes, and
replay claims."""

from __future__ import annotations

import base64
import itertools
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.utils import (decode_dss_signature,
                                                             encode_dss_signature)

from core.compose import compose_message
from core.mail import parse_email
from tests.corpus import all_corpus_messages, corpus_message, needs_corpus
from tests.providers import (FORMATS, POSTMARK_AUTH, delivery, mailgun_mime, mailgun_parsed,
                             mailgun_signature, message_with_attachment, multipart,
                             postmark_json, rebuilt_fields, sendgrid_raw, sendgrid_signed)
from tests.processes import json_lines
from tests.rows import email_count, stored_email
from tests.servers import spamsift_web
from web import create_app

MB = 1_000_000
_attempts = itertools.count()


def post(client, fmt: str, raw: bytes, token: str | None = None, query: str = ""):
    """Post ``raw`` in one provider format; the response. Each post is a new delivery
    attempt, so a SendGrid post is signed at its own time."""
    signed_at = str(int(time.time()) - next(_attempts) % 200)
    path, body, headers = delivery(fmt, raw, token, signed_at)
    return client.post(path + query, data=body, headers=headers)


REBUILT = ("mailgun", "sendgrid", "postmark")
REJECT = {"raw": 413, "mailgun": 406, "mailgun-mime": 406, "sendgrid": 413,
          "sendgrid-raw": 413, "postmark": 403}


# --- sizes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [5 * MB, 25 * MB], ids=["5MB", "25MB"])
def test_every_format_accepts_big_messages(client, api_token, size):
    raw = message_with_attachment(size)
    for fmt in FORMATS:
        response = post(client, fmt, raw, api_token)
        assert response.status_code in (200, 202), (fmt, response.get_json())
        parsed = parse_email(stored_email(response.get_json()["id"]).raw)
        assert parsed.text == "Here is the quarterly report.", fmt
        [attachment] = parsed.attachments
        assert attachment["filename"] == "report.pdf"
        assert attachment["size"] > size * 0.7, fmt


def test_too_large_messages_get_the_status_that_stops_retries(committed, broker, api_token,
                                                              settings):
    settings(MAX_MESSAGE_BYTES=1 * MB)
    client = create_app().test_client()
    # Over the message limit, inside the request limit; then over the request limit too.
    for size in (int(1.2 * MB), 4 * MB):
        raw = message_with_attachment(size)
        for fmt in FORMATS:
            response = post(client, fmt, raw, api_token)
            assert response.status_code == REJECT[fmt], (fmt, size, response.status_code)
            assert "limit" in response.get_json()["error"]
    assert email_count() == 0


# --- exact bytes, and what the corpus shows ------------------------------------------------


@needs_corpus
@pytest.mark.parametrize("name", ["spam_2/00252", "easy_ham_2/00014"])
def test_mailgun_raw_route_stores_the_exact_bytes(client, api_token, name):
    raw = corpus_message(name)
    assert any(byte >= 0x80 for byte in raw)  # 8-bit bytes that are not UTF-8
    response = post(client, "mailgun-mime", raw)
    assert response.status_code == 200
    assert stored_email(response.get_json()["id"]).raw == raw
    again = post(client, "raw", raw, api_token)
    assert again.get_json() == {**response.get_json(), "duplicate": True}


@needs_corpus
@pytest.mark.parametrize("fmt", REBUILT)
def test_rebuilt_formats_take_corpus_messages_that_broke_them(client, fmt):
    # Two Cc or Reply-To headers, an empty Message-Id: <>, a big5 subject.
    for name in ("spam_2/00271", "spam_2/00464", "spam_2/00475", "spam_2/00737",
                 "spam_2/00357", "spam/00311"):
        response = post(client, fmt, corpus_message(name))
        assert response.status_code == 200, (name, response.get_json())
        assert response.get_json()["duplicate"] is False
    assert email_count() == 6


@needs_corpus
def test_composing_never_raises_over_the_whole_corpus():
    count = 0
    for name, raw in all_corpus_messages():
        rebuilt = compose_message(*rebuilt_fields(raw), "test")
        assert rebuilt.raw and len(rebuilt.content_digest) == 32, name
        count += 1
    assert count == 6046


@needs_corpus
def test_the_same_message_gives_the_same_text_through_every_format(client, api_token,
                                                                   mail_fixture):
    bounce = corpus_message("spam_2/00169")  # a bounce carrying spam as message/rfc822
    for raw in (bounce, mail_fixture("nested_rfc822.eml"), mail_fixture("attachments.eml")):
        expected = parse_email(raw)
        for fmt in FORMATS:
            response = post(client, fmt, raw, api_token)
            assert response.status_code in (200, 202), (fmt, response.get_json())
            got = parse_email(stored_email(response.get_json()["id"]).raw)
            assert (got.subject, got.text) == (expected.subject, expected.text), fmt
    assert "Forwarded message from" in parse_email(bounce).text


def test_rebuilt_messages_keep_forwarded_parts_inline_parts_and_no_empty_html():
    from core.compose import Attachment

    forwarded = b"From: spammer@example.net\r\nSubject: Cheap pills\r\n\r\nBuy now.\r\n"
    rebuilt = compose_message(
        [("From", "a@example.com"), ("Subject", "Bounce")], "Undeliverable", "",
        [Attachment(None, "message/rfc822", forwarded),
         Attachment("logo.png", "image/png", b"\x89PNG...", "<logo@example.com>")],
        "test").raw
    assert b"Content-Type: message/rfc822" in rebuilt
    assert b"Subject: Cheap pills" in rebuilt  # not base64 (RFC 2046 forbids it)
    assert b"Content-ID: <logo@example.com>" in rebuilt
    assert b"Content-Disposition: inline" in rebuilt
    assert b"text/html" not in rebuilt  # an empty HtmlBody is no HTML part


# --- retries and look-alikes ---------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["raw", "postmark", "mailgun", "sendgrid"])
def test_copied_headers_do_not_inherit_an_earlier_verdict(client, api_token, fmt):
    harmless = (b"From: Bob <bob@example.com>\r\nSubject: Lunch?\r\n"
                b"Message-ID: <lunch-1@example.com>\r\n\r\nShall we meet at noon?\r\n")
    malicious = harmless.replace(b"Shall we meet at noon?",
                                 b"Your mailbox is full: log in at http://evil.example/")
    first = post(client, fmt, harmless, api_token)
    second = post(client, fmt, malicious, api_token)
    assert second.get_json()["duplicate"] is False
    assert second.get_json()["id"] != first.get_json()["id"]
    assert "evil.example" in parse_email(stored_email(second.get_json()["id"]).raw).text
    retry = post(client, fmt, harmless, api_token)
    assert retry.get_json() == {**first.get_json(), "duplicate": True}


def test_a_retry_whose_rebuilt_headers_differ_is_still_a_retry(client):
    raw = (b"From: Bob <bob@example.com>\r\nSubject: Lunch?\r\n"
           b"Message-ID: <lunch-2@example.com>\r\n\r\nShall we meet at noon?\r\n")
    first_payload = postmark_json(raw)
    retry_payload = {**first_payload, "Headers": [{"Name": "X-Attempt", "Value": "2"}]}
    first = client.post("/webhooks/postmark", json=first_payload, auth=POSTMARK_AUTH)
    retry = client.post("/webhooks/postmark", json=retry_payload, auth=POSTMARK_AUTH)
    assert retry.get_json() == {**first.get_json(), "duplicate": True}
    assert email_count() == 1


# --- replay claims -------------------------------------------------------------------------


def test_mailgun_claim_fails_closed_without_redis(committed, broker, settings):
    settings(BROKER_URL="redis://127.0.0.1:1/0")
    client = create_app().test_client()
    body, content_type = mailgun_mime(b"Subject: hi\r\n\r\nhello\r\n")
    response = client.post("/webhooks/mailgun/mime", data=body, content_type=content_type)
    assert response.status_code == 503  # Mailgun retries; nothing unverifiable is stored
    assert email_count() == 0


def test_mailgun_claim_is_given_back_when_the_email_is_not_stored(committed, broker, settings):
    signature = mailgun_signature()
    body, content_type = mailgun_mime(b"Subject: hi\r\n\r\nhello\r\n", **signature)
    settings(DATABASE_URL="postgresql://postgres@127.0.0.1:1/nothing")
    down = create_app().test_client().post("/webhooks/mailgun/mime", data=body,
                                           content_type=content_type)
    assert down.status_code == 503
    from tests.conftest import TEST_DATABASE_URL

    settings(DATABASE_URL=TEST_DATABASE_URL)
    retry = create_app().test_client().post("/webhooks/mailgun/mime", data=body,
                                            content_type=content_type)
    assert retry.status_code == 200  # the same signed delivery, retried by Mailgun
    replay = create_app().test_client().post("/webhooks/mailgun/mime", data=body,
                                             content_type=content_type)
    assert replay.status_code == 401 and "replay" in replay.get_json()["error"]


def test_mailgun_second_factor(committed, broker, settings):
    settings(MAILGUN_WEBHOOK_SECRET="a-long-mailgun-route-secret")
    client = create_app().test_client()
    raw = b"Subject: hi\r\n\r\nhello\r\n"
    body, content_type = mailgun_mime(raw)
    assert client.post("/webhooks/mailgun/mime", data=body,
                       content_type=content_type).status_code == 401
    assert client.post("/webhooks/mailgun/wrong-secret/mime", data=body,
                       content_type=content_type).status_code == 401
    ok = client.post("/webhooks/mailgun/a-long-mailgun-route-secret/mime", data=body,
                     content_type=content_type)
    assert ok.status_code == 200
    body, content_type = mailgun_parsed(raw)
    basic = client.post("/webhooks/mailgun", data=body, content_type=content_type,
                        auth=("mailgun", "a-long-mailgun-route-secret"))
    assert basic.status_code == 200


def malleable(signature_b64: str) -> str:
    """The same ECDSA signature, re-encoded: (r, s) → (r, n − s) is valid too."""
    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    r, s = decode_dss_signature(base64.b64decode(signature_b64))
    return base64.b64encode(encode_dss_signature(r, order - s)).decode()


def test_sendgrid_replays_are_refused_however_the_signature_is_written(client):
    body, content_type = sendgrid_raw(b"Subject: hi\r\n\r\nhello\r\n")
    headers = sendgrid_signed(body)
    assert client.post("/webhooks/sendgrid", data=body, content_type=content_type,
                       headers=headers).status_code == 200
    name = "X-Twilio-Email-Event-Webhook-Signature"
    # base64 junk the decoder skips, and the malleable twin of the signature
    for signature in (malleable(headers[name]), headers[name] + "*", "!" + headers[name]):
        replay = client.post("/webhooks/sendgrid", data=body, content_type=content_type,
                             headers={**headers, name: signature})
        assert replay.status_code == 503 and "replay" in replay.get_json()["error"], signature


def test_url_secrets_stay_out_of_the_access_log(committed, broker, settings):
    """``spamsift web`` (gunicorn) writes the access log; webhook secrets are redacted."""
    import requests

    settings(SENDGRID_PUBLIC_KEY="")
    body, content_type = multipart([("email", b"Subject: hi\r\n\r\nhello\r\n", {})])
    with spamsift_web("-w", "1") as server:
        response = requests.post(server.url + "/webhooks/sendgrid/sendgrid-url-secret",
                                 data=body, headers={"Content-Type": content_type}, timeout=30)
        assert response.status_code == 200
    requests_logged = [line for line in json_lines(server.output)
                       if line.get("logger") == "gunicorn.access"]
    assert ("POST", "/webhooks/sendgrid/***", 200) in {
        (line["method"], line["path"], line["status"]) for line in requests_logged}
    assert "sendgrid-url-secret" not in server.output
