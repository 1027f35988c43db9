"""Build each provider's webhook payload from a raw message, the way the provider posts it.

Mailgun (parsed route: form fields, ``multipart/form-data`` when there are attachments, else
``application/x-www-form-urlencoded``; raw route: ``body-mime``), SendGrid Inbound Parse
(multipart, each text field in its own charset; or the raw message in ``email``) and Postmark
(JSON, attachments base64). Tests post these to the webhooks and compare what is stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import re
import time
import uuid
from email import policy
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesParser
from urllib.parse import quote_from_bytes

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from core.mail import decode_bytes


def _sendgrid_key_pair():
    """A P-256 key pair made for this run: tests sign like SendGrid, the app verifies."""
    from cryptography.hazmat.primitives import serialization

    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return key, base64.b64encode(public).decode()


SENDGRID_PRIVATE_KEY, _sendgrid_public_key = _sendgrid_key_pair()
# The providers' credentials, as the app is given them (tests/conftest.py, the benchmarks).
WEBHOOK_SETTINGS = {
    "SPAMSIFT_MAILGUN_SIGNING_KEY": "key-test-mailgun-signing",
    "SPAMSIFT_SENDGRID_PUBLIC_KEY": _sendgrid_public_key,
    "SPAMSIFT_SENDGRID_SECRET": "sendgrid-url-secret",
    "SPAMSIFT_POSTMARK_USERNAME": "postmark",
    "SPAMSIFT_POSTMARK_PASSWORD": "postmark-test-password",
}
MAILGUN_KEY = WEBHOOK_SETTINGS["SPAMSIFT_MAILGUN_SIGNING_KEY"]
POSTMARK_AUTH = ("postmark", WEBHOOK_SETTINGS["SPAMSIFT_POSTMARK_PASSWORD"])

# Postmark lists these as top-level fields, not in Headers.
_POSTMARK_TOP_LEVEL = {"from", "to", "cc", "subject", "date", "message-id"}


# --- encodings -----------------------------------------------------------------------------


def multipart(fields: list[tuple[str, bytes, dict]], boundary: str = "xYzZY"
              ) -> tuple[bytes, str]:
    """A multipart/form-data body: each field's bytes as given, files with their names and
    content types."""
    out = io.BytesIO()
    for name, data, extra in fields:
        out.write(f"--{boundary}\r\n".encode())
        disposition = f'form-data; name="{name}"'
        if "filename" in extra:
            disposition += f'; filename="{extra["filename"]}"'
        out.write(f"Content-Disposition: {disposition}\r\n".encode())
        if "type" in extra:
            out.write(f"Content-Type: {extra['type']}\r\n".encode())
        out.write(b"\r\n" + data + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def urlencoded(fields: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    body = "&".join(f"{quote_from_bytes(name.encode())}={quote_from_bytes(value)}"
                    for name, value in fields)
    return body.encode("ascii"), "application/x-www-form-urlencoded"


# --- signatures ----------------------------------------------------------------------------


def mailgun_signature(timestamp: str | None = None, token: str | None = None) -> dict:
    timestamp = timestamp or str(int(time.time()))
    token = token or uuid.uuid4().hex * 2
    signature = hmac.new(MAILGUN_KEY.encode(), (timestamp + token).encode(),
                         hashlib.sha256).hexdigest()
    return {"timestamp": timestamp, "token": token, "signature": signature}


def sendgrid_signed(body: bytes, timestamp: str | None = None) -> dict:
    timestamp = timestamp or str(int(time.time()))
    signature = SENDGRID_PRIVATE_KEY.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {"X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp}


# --- reading the message as a provider does ------------------------------------------------


def _parse(raw: bytes) -> Message:
    return BytesParser(policy=policy.compat32).parsebytes(raw)


def _decoded(value: str) -> str:
    try:
        return str(make_header(decode_header(value)))
    except Exception:  # a provider passes undecodable headers on as they are
        return value


def _headers(message: Message) -> list[tuple[str, str]]:
    return [(name, _decoded(re.sub(r"\r?\n(?=[ \t])", "", str(value))))
            for name, value in message.items()]


def _text_of(part: Message) -> str:
    return decode_bytes(part.get_payload(decode=True) or b"", part.get_content_charset())[0]


def _pieces(message: Message):
    """(plain part, html part, attachments): the first text/plain and text/html leaves that
    are not attachments are the bodies; every other leaf, and every forwarded message as a
    whole, is an attachment (filename, content type, bytes, content id)."""
    plain = html = None
    attachments = []

    def visit(part: Message) -> None:
        nonlocal plain, html
        content_type = part.get_content_type()
        disposition = (part.get("Content-Disposition") or "").split(";")[0].strip().lower()
        if content_type == "message/rfc822":
            inner = part.get_payload()
            data = inner[0].as_bytes() if isinstance(inner, list) else str(inner).encode()
            attachments.append((part.get_filename(), content_type, data, part.get("Content-ID")))
        elif part.is_multipart():
            for child in part.get_payload():
                visit(child)
        elif content_type == "text/plain" and plain is None and disposition != "attachment" \
                and not part.get_filename():
            plain = part
        elif content_type == "text/html" and html is None and disposition != "attachment" \
                and not part.get_filename():
            html = part
        else:
            attachments.append((part.get_filename(), content_type,
                                part.get_payload(decode=True) or b"", part.get("Content-ID")))

    visit(message)
    return plain, html, attachments


# --- each provider's payload ---------------------------------------------------------------


def mailgun_parsed(raw: bytes, **signature) -> tuple[bytes, str]:
    """Mailgun's parsed-route post: text decoded to UTF-8, attachments as files."""
    message = _parse(raw)
    plain, html, attachments = _pieces(message)
    headers = _headers(message)
    first = {name.lower(): value for name, value in reversed(headers)}
    fields = [("recipient", b"inbox@example.org"), ("sender", first.get("from", "").encode()),
              ("from", first.get("from", "").encode()),
              ("subject", first.get("subject", "").encode()),
              ("message-headers", json.dumps(headers).encode()),
              ("body-plain", _text_of(plain).encode() if plain is not None else b"")]
    if html is not None:
        fields.append(("body-html", _text_of(html).encode()))
    content_ids = {cid: f"attachment-{n}" for n, (_, _, _, cid) in enumerate(attachments, 1)
                   if cid}
    fields += [("attachment-count", str(len(attachments)).encode()),
               ("content-id-map", json.dumps(content_ids).encode())]
    fields += [(name, value.encode()) for name, value in
               (signature or mailgun_signature()).items()]
    if not attachments:
        return urlencoded(fields)
    files = [(f"attachment-{n}", data, {"filename": filename or f"attachment-{n}",
                                        "type": content_type})
             for n, (filename, content_type, data, _) in enumerate(attachments, 1)]
    return multipart([(name, value, {}) for name, value in fields] + files)


def mailgun_mime(raw: bytes, **signature) -> tuple[bytes, str]:
    """Mailgun's raw route (URL ending in 'mime'): the message as sent, in ``body-mime``."""
    fields = [("recipient", b"inbox@example.org"), ("body-mime", raw)]
    fields += [(name, value.encode()) for name, value in
               (signature or mailgun_signature()).items()]
    return multipart([(name, value, {}) for name, value in fields])


def sendgrid_parsed(raw: bytes) -> tuple[bytes, str]:
    """SendGrid's default post: the raw header block, each text field in its charset."""
    message = _parse(raw)
    plain, html, attachments = _pieces(message)
    head = raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]
    charsets = {"headers": "iso-8859-1", "to": "UTF-8", "from": "UTF-8", "subject": "UTF-8"}
    headers = dict((name.lower(), value) for name, value in reversed(_headers(message)))
    fields = [("headers", head, {}), ("to", headers.get("to", "").encode(), {}),
              ("from", headers.get("from", "").encode(), {}),
              ("subject", headers.get("subject", "").encode(), {})]
    for name, part in (("text", plain), ("html", html)):
        if part is not None:
            charset = part.get_content_charset() or "us-ascii"
            fields.append((name, part.get_payload(decode=True) or b"", {}))
            charsets[name] = charset
    info = {}
    for n, (filename, content_type, data, cid) in enumerate(attachments, 1):
        info[f"attachment{n}"] = {"filename": filename or f"attachment{n}",
                                  "name": filename or f"attachment{n}", "type": content_type,
                                  **({"content-id": cid.strip("<>")} if cid else {})}
        fields.append((f"attachment{n}", data, {"filename": filename or f"attachment{n}",
                                                "type": content_type}))
    fields += [("attachments", str(len(attachments)).encode(), {}),
               ("attachment-info", json.dumps(info).encode(), {}),
               ("charsets", json.dumps(charsets).encode(), {})]
    return multipart(fields)


def sendgrid_raw(raw: bytes) -> tuple[bytes, str]:
    """SendGrid with "POST the raw, full MIME message": the message in ``email``."""
    return multipart([("email", raw, {}), ("to", b"inbox@example.org", {}),
                      ("charsets", b'{"to":"UTF-8"}', {})])


def postmark_json(raw: bytes) -> dict:
    """Postmark's inbound JSON: main headers as fields, the rest in Headers."""
    message = _parse(raw)
    plain, html, attachments = _pieces(message)
    headers = _headers(message)
    first = {name.lower(): value for name, value in reversed(headers)}
    return {
        "From": first.get("from", ""), "To": first.get("to", ""), "Cc": first.get("cc", ""),
        "Subject": first.get("subject", ""), "Date": first.get("date", ""),
        "MessageID": first.get("message-id", "").strip().strip("<>"),
        "TextBody": _text_of(plain) if plain is not None else "",
        "HtmlBody": _text_of(html) if html is not None else "",
        "Headers": [{"Name": name, "Value": value} for name, value in headers
                    if name.lower() not in _POSTMARK_TOP_LEVEL],
        "Attachments": [{"Name": filename or "attachment", "ContentType": content_type,
                         "Content": base64.b64encode(data).decode(),
                         "ContentLength": len(data), "ContentID": (cid or "").strip("<>")}
                        for filename, content_type, data, cid in attachments],
    }


def rebuilt_fields(raw: bytes):
    """What a rebuilt format hands ``compose_message``: decoded headers, the text and HTML
    bodies, and the attachments (forwarded messages whole)."""
    from core.compose import Attachment

    message = _parse(raw)
    plain, html, attachments = _pieces(message)
    return (_headers(message), _text_of(plain) if plain is not None else None,
            _text_of(html) if html is not None else None,
            [Attachment(filename, content_type, data, cid)
             for filename, content_type, data, cid in attachments])


# --- one delivery, ready to post --------------------------------------------------------


FORMATS = ("raw", "mailgun", "mailgun-mime", "sendgrid", "sendgrid-raw", "postmark")


def delivery(fmt: str, raw: bytes, token: str | None = None, signed_at: str | None = None
             ) -> tuple[str, bytes, dict[str, str]]:
    """(path, body, headers) of ``raw`` posted in one provider format; ``token`` is the API
    token of the raw format, ``signed_at`` the time a SendGrid post is signed at."""
    if fmt == "raw":
        return "/webhooks/raw", raw, {"Authorization": f"Bearer {token}",
                                      "Content-Type": "message/rfc822"}
    if fmt in ("mailgun", "mailgun-mime"):
        body, content_type = (mailgun_parsed if fmt == "mailgun" else mailgun_mime)(raw)
        path = "/webhooks/mailgun" if fmt == "mailgun" else "/webhooks/mailgun/mime"
        return path, body, {"Content-Type": content_type}
    if fmt in ("sendgrid", "sendgrid-raw"):
        body, content_type = (sendgrid_parsed if fmt == "sendgrid" else sendgrid_raw)(raw)
        return "/webhooks/sendgrid", body, {"Content-Type": content_type,
                                            **sendgrid_signed(body, signed_at)}
    if fmt == "postmark":
        credentials = base64.b64encode(":".join(POSTMARK_AUTH).encode()).decode()
        return "/webhooks/postmark", json.dumps(postmark_json(raw)).encode(), {
            "Content-Type": "application/json", "Authorization": f"Basic {credentials}"}
    raise ValueError(f"unknown format {fmt!r}")


def message_with_attachment(size: int, marker: str = "quarterly report") -> bytes:
    """A plain message with a PDF attachment, ``size`` bytes in all (give or take a line)."""
    import os

    head = (f"From: Carol <carol@example.com>\r\nTo: team@example.org\r\n"
            f"Subject: The {marker}\r\nMessage-ID: <{marker.replace(' ', '-')}@example.com>\r\n"
            "Date: Mon, 23 Nov 2026 09:00:00 +0000\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
            f"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHere is the {marker}.\r\n"
            "--b1\r\nContent-Type: application/pdf\r\n"
            'Content-Disposition: attachment; filename="report.pdf"\r\n'
            "Content-Transfer-Encoding: base64\r\n\r\n").encode()
    tail = b"\r\n--b1--\r\n"
    raw_size = (size - len(head) - len(tail)) * 57 // 78
    data = base64.encodebytes(os.urandom(raw_size)).replace(b"\n", b"\r\n")
    return head + data + tail
