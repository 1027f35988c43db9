"""Every webhook format with payloads built as the providers document them, on real
PostgreSQL and Redis: good and forged signatures, replays, retries, oversize, outages."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import time

import pytest

from core.db import session_scope
from core.mail import parse_email
from core.models import EmailStatus
from tests.conftest import FIXTURES
from tests.providers import POSTMARK_AUTH, mailgun_signature, multipart, sendgrid_signed
from tests.rows import email_count, stored_email
from web import create_app


def mailgun_form(**overrides) -> dict:
    """The fields Mailgun posts for a parsed route (its 'Receiving messages' docs)."""
    headers = [["Received", "by luna.mailgun.net with SMTP mgrt 8734663311733"],
               ["Mime-Version", "1.0"], ["Content-Type", "multipart/mixed; boundary=\"a\""],
               ["Subject", "Re: Sample POST request"], ["From", "Bob <bob@example.com>"],
               ["To", "Alice <alice@example.org>"],
               ["Message-Id", "<517ACC75.5010709@example.com>"],
               ["Date", "Fri, 26 Apr 2013 11:50:29 -0700"]]
    form = {"recipient": "alice@example.org", "sender": "bob@example.com",
            "from": "Bob <bob@example.com>", "subject": "Re: Sample POST request",
            "body-plain": "Hi Alice, this is Bob.\n\nI also attached a file.\n",
            "stripped-text": "Hi Alice, this is Bob.", "stripped-signature": "",
            "body-html": "<html><body><p>Hi Alice, this is Bob.</p></body></html>",
            "stripped-html": "<p>Hi Alice, this is Bob.</p>",
            "attachment-count": "1", "message-headers": json.dumps(headers),
            "content-id-map": "{}", **mailgun_signature()}
    form.update(overrides)
    return form


def test_raw_mime_with_bearer_token(client, api_token, mail_fixture):
    raw = mail_fixture("plain.eml")
    auth = {"Authorization": f"Bearer {api_token}"}
    first = client.post("/webhooks/raw", data=raw, content_type="message/rfc822", headers=auth)
    assert first.status_code == 202
    body = first.get_json()
    assert body["duplicate"] is False and body["status_url"] == f"/api/emails/{body['id']}"
    assert stored_email(body["id"]).raw == raw  # kept byte for byte
    again = client.post("/webhooks/raw", data=raw, content_type="message/rfc822", headers=auth)
    assert again.status_code == 202
    assert again.get_json() == {**body, "duplicate": True}
    assert email_count() == 1


@pytest.mark.parametrize("headers,status", [
    ({}, 401), ({"Authorization": "Bearer ss_not-a-real-token"}, 401),
    ({"Authorization": "Basic Zm9vOmJhcg=="}, 401)])
def test_raw_mime_refuses_missing_or_bad_tokens(client, mail_fixture, headers, status):
    response = client.post("/webhooks/raw", data=mail_fixture("plain.eml"),
                           content_type="message/rfc822", headers=headers)
    assert response.status_code == status and "token" in response.get_json()["error"]
    assert email_count() == 0


def test_raw_mime_rejects_wrong_type_empty_and_oversize(client, api_token, settings):
    auth = {"Authorization": f"Bearer {api_token}"}
    wrong = client.post("/webhooks/raw", data=b"{}", content_type="application/json",
                        headers=auth)
    assert wrong.status_code == 415
    empty = client.post("/webhooks/raw", data=b"  ", content_type="message/rfc822",
                        headers=auth)
    assert empty.status_code == 413 and empty.get_json()["error"] == "empty message"
    settings(MAX_MESSAGE_BYTES=2048)
    small_client = create_app().test_client()
    big = b"Subject: big\r\n\r\n" + b"x" * 3000
    over = small_client.post("/webhooks/raw", data=big, content_type="message/rfc822",
                             headers=auth)
    assert over.status_code == 413 and "limit" in over.get_json()["error"]
    huge = small_client.post("/webhooks/raw", data=b"x" * 10_000_000,
                             content_type="message/rfc822", headers=auth)
    assert huge.status_code == 413  # refused before it is read
    assert email_count() == 0


def test_mailgun_parsed_route(client):
    form = mailgun_form()
    form["attachment-1"] = (io.BytesIO(b"%PDF-1.4 test"), "invoice.pdf", "application/pdf")
    response = client.post("/webhooks/mailgun", data=form, content_type="multipart/form-data")
    assert response.status_code == 200, response.get_json()
    email = stored_email(response.get_json()["id"])
    assert email.source == "webhook:mailgun"
    assert email.message_id == "<517ACC75.5010709@example.com>"
    parsed = parse_email(email.raw)
    assert parsed.subject == "Re: Sample POST request" and parsed.sender == "bob@example.com"
    assert "I also attached a file." in parsed.text
    assert parsed.attachments == [{"filename": "invoice.pdf", "content_type": "application/pdf",
                                   "size": 13}]
    assert ["Received", "by luna.mailgun.net with SMTP mgrt 8734663311733"] in parsed.headers

    # Mailgun retries the same message with a fresh signature: same email, no second row.
    retry_form = mailgun_form()
    retry_form["attachment-1"] = (io.BytesIO(b"%PDF-1.4 test"), "invoice.pdf", "application/pdf")
    retry = client.post("/webhooks/mailgun", data=retry_form, content_type="multipart/form-data")
    assert retry.status_code == 200 and retry.get_json()["id"] == email.id
    assert retry.get_json()["duplicate"] is True
    assert email_count() == 1


def test_mailgun_raw_mime_route(client, mail_fixture):
    raw = mail_fixture("rfc2047_headers.eml")
    response = client.post("/webhooks/mailgun/mime",
                           data={**mailgun_signature(), "recipient": "alice@example.org",
                                 "body-mime": raw.decode("utf-8")})
    assert response.status_code == 200
    assert stored_email(response.get_json()["id"]).raw == raw


def test_mailgun_forged_stale_and_replayed_signatures(client):
    # 401, not 406: Mailgun never retries a 406, so a rotated key would drop mail for good.
    forged = mailgun_form(signature="0" * 64)
    assert client.post("/webhooks/mailgun", data=forged).status_code == 401
    stale = mailgun_form(**mailgun_signature(timestamp=str(int(time.time()) - 3600)))
    assert client.post("/webhooks/mailgun", data=stale).status_code == 401
    assert email_count() == 0

    signed = mailgun_signature()
    assert client.post("/webhooks/mailgun", data=mailgun_form(**signed)).status_code == 200
    replay = client.post("/webhooks/mailgun", data=mailgun_form(**signed, subject="changed"))
    assert replay.status_code == 401 and "replay" in replay.get_json()["error"]
    assert email_count() == 1


def sendgrid_parsed_body() -> tuple[bytes, str]:
    headers = ("Received: by mx0047p1mdw1.sendgrid.net with SMTP id 6WCVv7KAWn\r\n"
               "From: =?iso-8859-1?q?Ren=E9?= <rene@example.fr>\r\nTo: inbox@parse.example.com\r\n"
               "Subject: Caf\xe9 ce soir\r\nMessage-ID: <cafe-1@example.fr>\r\n"
               "Date: Wed, 10 Aug 2016 14:44:21 -0700\r\n")
    return multipart([
        ("headers", headers.encode("iso-8859-1"), {}),
        ("dkim", b"{@example.fr : pass}", {}),
        ("to", b"inbox@parse.example.com", {}),
        ("from", "René <rene@example.fr>".encode("iso-8859-1"), {}),
        ("text", "On se retrouve au caf\xe9 \xe0 19h ?\n".encode("iso-8859-1"), {}),
        ("html", "<p>On se retrouve au caf\xe9 \xe0 19h ?</p>".encode("iso-8859-1"), {}),
        ("sender_ip", b"192.0.2.10", {}),
        ("envelope", b'{"to":["inbox@parse.example.com"],"from":"rene@example.fr"}', {}),
        ("attachments", b"1", {}),
        ("subject", "Caf\xe9 ce soir".encode("iso-8859-1"), {}),
        ("attachment-info", b'{"attachment1":{"filename":"plan.txt","name":"plan.txt",'
                            b'"type":"text/plain"}}', {}),
        ("charsets", b'{"to":"UTF-8","html":"iso-8859-1","subject":"iso-8859-1",'
                     b'"from":"iso-8859-1","text":"iso-8859-1","headers":"iso-8859-1"}', {}),
        ("SPF", b"pass", {}),
        ("attachment1", b"rue de la Paix", {"filename": "plan.txt", "type": "text/plain"}),
    ])


def test_sendgrid_parsed_fields_with_their_charsets(client):
    body, content_type = sendgrid_parsed_body()
    response = client.post("/webhooks/sendgrid", data=body, content_type=content_type,
                           headers=sendgrid_signed(body))
    assert response.status_code == 200, response.get_json()
    parsed = parse_email(stored_email(response.get_json()["id"]).raw)
    assert parsed.subject == "Café ce soir"
    assert parsed.sender == "rene@example.fr"
    assert parsed.text == "On se retrouve au café à 19h ?"
    assert parsed.attachments == [{"filename": "plan.txt", "content_type": "text/plain",
                                   "size": 14}]


def test_sendgrid_raw_email_field_and_forged_signature(client, mail_fixture):
    raw = mail_fixture("nested_rfc822.eml")
    body, content_type = multipart([("email", raw, {}), ("to", b"inbox@parse.example.com", {}),
                                    ("charsets", b'{"to":"UTF-8"}', {})])
    forged = sendgrid_signed(body + b"tampered")
    # 503, not 401: SendGrid drops the mail on any 4xx, so a rotated key would lose it.
    bad = client.post("/webhooks/sendgrid", data=body, content_type=content_type, headers=forged)
    assert bad.status_code == 503
    unsigned = client.post("/webhooks/sendgrid", data=body, content_type=content_type)
    assert unsigned.status_code == 503
    assert email_count() == 0
    signed = sendgrid_signed(body)
    good = client.post("/webhooks/sendgrid", data=body, content_type=content_type, headers=signed)
    assert good.status_code == 200
    assert stored_email(good.get_json()["id"]).raw == raw
    replay = client.post("/webhooks/sendgrid", data=body, content_type=content_type,
                         headers=signed)
    assert replay.status_code == 503 and "replay" in replay.get_json()["error"]


def test_sendgrid_secret_in_the_url_when_signing_is_off(client, settings, mail_fixture):
    settings(SENDGRID_PUBLIC_KEY="")
    unsigned_client = create_app().test_client()
    body, content_type = multipart([("email", mail_fixture("plain.eml"), {})])
    wrong = unsigned_client.post("/webhooks/sendgrid/guess", data=body, content_type=content_type)
    assert wrong.status_code == 503
    right = unsigned_client.post("/webhooks/sendgrid/sendgrid-url-secret", data=body,
                                 content_type=content_type)
    assert right.status_code == 200
    basic = unsigned_client.post("/webhooks/sendgrid", data=body, content_type=content_type,
                                 headers={"Authorization": "Basic " + base64.b64encode(
                                     b"sendgrid:sendgrid-url-secret").decode()})
    assert basic.status_code == 200 and basic.get_json()["duplicate"] is True


def postmark_payload() -> dict:
    """Postmark's documented inbound JSON (trimmed to the fields spamsift reads and more)."""
    return {
        "FromName": "Postmarkapp Support", "MessageStream": "inbound",
        "From": "support@postmarkapp.com",
        "FromFull": {"Email": "support@postmarkapp.com", "Name": "Postmarkapp Support"},
        "To": "\"Firstname Lastname\" <yourhash+SampleHash@inbound.postmarkapp.com>",
        "ToFull": [{"Email": "yourhash+SampleHash@inbound.postmarkapp.com",
                    "Name": "Firstname Lastname", "MailboxHash": "SampleHash"}],
        "Cc": "\"First Cc\" <firstcc@postmarkapp.com>", "OriginalRecipient":
        "yourhash+SampleHash@inbound.postmarkapp.com", "Subject": "Test subject",
        "MessageID": "73e6d360-66eb-11e1-8e72-a8904824019b",
        "Date": "Fri, 1 Aug 2014 16:45:32 -04:00", "TextBody": "This is a test text body.",
        "HtmlBody": "<html><body><p>This is a test html body.</p></body></html>",
        "StrippedTextReply": "This is the reply text", "Tag": "TestTag",
        "Headers": [{"Name": "X-Header-Test", "Value": ""},
                    {"Name": "X-Spam-Status", "Value": "No"},
                    {"Name": "X-Spam-Score", "Value": "-0.1"}],
        "Attachments": [{"Name": "test.txt", "Content": base64.b64encode(
            b"This is attachment contents, base-64 encoded.").decode(),
            "ContentType": "text/plain", "ContentLength": 45}],
    }


def test_postmark_inbound_json(client):
    response = client.post("/webhooks/postmark", json=postmark_payload(), auth=POSTMARK_AUTH)
    assert response.status_code == 200
    email = stored_email(response.get_json()["id"])
    assert email.message_id == "<73e6d360-66eb-11e1-8e72-a8904824019b>"
    parsed = parse_email(email.raw)
    assert parsed.subject == "Test subject" and parsed.sender == "support@postmarkapp.com"
    assert parsed.text == "This is a test text body."
    assert parsed.recipients == ["yourhash+SampleHash@inbound.postmarkapp.com",
                                 "firstcc@postmarkapp.com"]
    assert parsed.attachments[0]["size"] == 45
    retry = client.post("/webhooks/postmark", json=postmark_payload(), auth=POSTMARK_AUTH)
    assert retry.get_json() == {**response.get_json(), "duplicate": True}


def test_postmark_bad_auth_and_bad_payloads(client):
    assert client.post("/webhooks/postmark", json=postmark_payload(),
                       auth=("postmark", "wrong")).status_code == 401
    assert client.post("/webhooks/postmark", json=postmark_payload()).status_code == 401
    bad_base64 = postmark_payload()
    bad_base64["Attachments"][0]["Content"] = "***not base64***"
    assert client.post("/webhooks/postmark", json=bad_base64,
                       auth=POSTMARK_AUTH).status_code == 403
    assert client.post("/webhooks/postmark", data="not json", content_type="application/json",
                       auth=POSTMARK_AUTH).status_code == 403
    assert email_count() == 0


def test_same_message_id_different_mail_is_not_merged(client):
    first = client.post("/webhooks/postmark", json=postmark_payload(), auth=POSTMARK_AUTH)
    other = postmark_payload()
    other["Subject"] = "A different message reusing the Message-ID"
    second = client.post("/webhooks/postmark", json=other, auth=POSTMARK_AUTH)
    assert second.get_json()["id"] != first.get_json()["id"]
    assert email_count() == 2


PROBE = """
import json, sys
from web import create_app
client = create_app().test_client()
response = client.post("/webhooks/postmark", data=sys.stdin.buffer.read(),
                       content_type="application/json", auth=("postmark", sys.argv[1]))
print(json.dumps({"code": response.status_code, "body": response.get_json()}))
"""


def post_in_process_with(env: dict) -> tuple[int, dict]:
    result = subprocess.run([sys.executable, "-c", PROBE, POSTMARK_AUTH[1]],
                            input=json.dumps(postmark_payload()).encode(),
                            env=dict(os.environ, **env), capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr.decode()
    reply = json.loads(result.stdout.decode().strip().splitlines()[-1])
    return reply["code"], reply["body"]


def test_database_down_answers_503_so_the_provider_retries(committed):
    code, body = post_in_process_with(
        {"SPAMSIFT_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/nothing"})
    assert code == 503 and "retry" in body["error"]


def test_broker_down_after_commit_still_accepts(committed):
    code, body = post_in_process_with({"SPAMSIFT_BROKER_URL": "redis://127.0.0.1:1/0"})
    assert code == 200 and body["duplicate"] is False
    email = stored_email(body["id"])
    assert email.status == EmailStatus.RECEIVED  # the reconciler will pick it up


def test_wait_returns_the_verdict_inline(client, api_token, celery_worker):
    from click.testing import CliRunner

    from cli.main import cli
    from core.intake import Incoming, store_emails
    from core.models import Label

    with session_scope() as session:
        for line in (FIXTURES / "labeled.jsonl").read_text().splitlines():
            record = json.loads(line)
            raw = f"Subject: {record['subject']}\n\n{record['text']}\n".encode()
            store_emails(session, [Incoming(raw, "test", Label(record["label"]), "import")])
    trained = CliRunner().invoke(cli, ["train", "baseline", "--wait", "--timeout", "120"])
    assert trained.exit_code == 0, trained.output

    raw = (b"From: lottery@prize.example\r\nSubject: You won the lottery\r\n\r\n"
           b"Claim your prize now, send your bank details and a processing fee.\r\n")
    response = client.post("/webhooks/raw?wait=10000", data=raw, content_type="message/rfc822",
                           headers={"Authorization": f"Bearer {api_token}"})
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "classified" and body["verdict"] in ("spam", "unsure", "ham")
    assert response.headers["X-Spam-Status"] == body["verdict"]
    assert response.headers["X-Spam-Flag"] == ("YES" if body["verdict"] == "spam" else "NO")
    assert float(response.headers["X-Spam-Score"]) == pytest.approx(body["p_spam"], abs=1e-4)
    assert 0.0 <= body["p_spam"] <= 1.0  # accuracy is the benchmarks' business, not this test's
