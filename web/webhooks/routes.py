"""The webhook endpoints, one per provider format."""

from __future__ import annotations

import base64
import binascii
import json
import re
from email import policy
from email.parser import BytesParser

from flask import request
from sqlalchemy.exc import DBAPIError

from core.compose import Attachment, compose_message
from core.config import get_settings
from core.db import session_scope
from core.mail import decode_bytes
from core.auth import constant_time_equal, token_grant
from core.models import Scope
from web.webhooks import blueprint
from web.webhooks.accept import MAILGUN, POSTMARK, RAW, SENDGRID, Codes, accept, error
from web.webhooks.verify import (basic_auth_valid, mailgun_signature_valid, remember,
                                 seen_before, sendgrid_signature_valid, timestamp_fresh)

RAW_TYPES = {"message/rfc822", "application/octet-stream", "text/plain"}
MAILGUN_ATTACHMENT = re.compile(r"attachment-\d+")
SENDGRID_ATTACHMENT = re.compile(r"attachment\d+")


@blueprint.post("/raw")
def raw_mime():
    """The whole message as the body (Content-Type message/rfc822), bearer token auth."""
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else ""
    try:
        with session_scope() as session:
            grant = token_grant(session, token) if token else None
    except DBAPIError:
        return error(503, "database unavailable; retry later", **{"Retry-After": "30"})
    if grant is None:
        return error(RAW.unauthorized, "a valid API token is required (Authorization: Bearer)",
                     **{"WWW-Authenticate": "Bearer"})
    if not grant.allows(Scope.INGEST):
        return error(403, "this token lacks the ingest scope")
    if request.mimetype not in RAW_TYPES:
        return error(415, "send the message as Content-Type: message/rfc822")
    return accept(request.get_data(), "webhook:raw", RAW)


# --- Mailgun ------------------------------------------------------------------------------


def _mailgun_verified(codes: Codes):
    settings = get_settings()
    if not settings.mailgun_signing_key:
        return None, error(404, "the Mailgun webhook is off: set SPAMSIFT_MAILGUN_SIGNING_KEY")
    form = request.form
    timestamp, token = form.get("timestamp", ""), form.get("token", "")
    signature = form.get("signature", "")
    if not (timestamp and token and signature) or not mailgun_signature_valid(
            settings.mailgun_signing_key, timestamp, token, signature):
        return None, error(codes.unauthorized, "bad or missing Mailgun signature")
    if not timestamp_fresh(timestamp, settings.webhook_timestamp_window):
        return None, error(codes.unauthorized, "Mailgun timestamp outside the allowed window")
    if seen_before("mailgun", token):
        return None, error(codes.unauthorized, "Mailgun token already used (replay)")
    return token, None


@blueprint.post("/mailgun/mime")
def mailgun_mime():
    """A Mailgun route whose URL ends in 'mime': the raw message in ``body-mime``."""
    token, failure = _mailgun_verified(MAILGUN)
    if failure is not None:
        return failure
    body = request.form.get("body-mime")
    if body is None:
        return error(MAILGUN.reject, "no body-mime field: use the /mailgun endpoint for "
                                     "parsed routes")
    return accept(body.encode("utf-8", "surrogateescape"), "webhook:mailgun", MAILGUN,
                  lambda: remember("mailgun", token, get_settings().webhook_timestamp_window))


@blueprint.post("/mailgun")
def mailgun_parsed():
    """A Mailgun route posting parsed fields; the message is rebuilt from them."""
    token, failure = _mailgun_verified(MAILGUN)
    if failure is not None:
        return failure
    form = request.form
    if "body-mime" in form:
        return mailgun_mime()
    try:
        headers = [(str(n), str(v)) for n, v in json.loads(form.get("message-headers") or "[]")]
    except (ValueError, TypeError):
        return error(MAILGUN.reject, "message-headers is not a JSON list of [name, value]")
    if not headers:
        headers = [("From", form.get("from") or form.get("sender", "")),
                   ("To", form.get("recipient", "")), ("Subject", form.get("subject", ""))]
    attachments = [Attachment(f.filename, f.mimetype or "application/octet-stream", f.read())
                   for name, f in sorted(request.files.items())
                   if MAILGUN_ATTACHMENT.fullmatch(name)]
    raw = compose_message(headers, form.get("body-plain"), form.get("body-html"), attachments,
                          "mailgun")
    return accept(raw, "webhook:mailgun", MAILGUN,
                  lambda: remember("mailgun", token, get_settings().webhook_timestamp_window))


# --- SendGrid -----------------------------------------------------------------------------


def _multipart_fields(body: bytes, content_type: str) -> dict[str, tuple[bytes, str | None,
                                                                        str | None]]:
    """Each form field's raw bytes (SendGrid declares per-field charsets, so nothing is
    decoded here), its file name and content type."""
    message = BytesParser(policy=policy.default).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    fields = {}
    for part in message.iter_parts() if message.is_multipart() else []:
        name = part.get_param("name", header="content-disposition")
        if name:
            fields[str(name)] = (part.get_payload(decode=True) or b"", part.get_filename(),
                                 part.get_content_type() if part.get_filename() else None)
    return fields


def _sendgrid_authorised(settings, secret: str | None, body: bytes) -> bool:
    signature = request.headers.get("X-Twilio-Email-Event-Webhook-Signature")
    timestamp = request.headers.get("X-Twilio-Email-Event-Webhook-Timestamp")
    if settings.sendgrid_public_key:
        return bool(signature and timestamp
                    and timestamp_fresh(timestamp, settings.webhook_timestamp_window)
                    and sendgrid_signature_valid(settings.sendgrid_public_key, timestamp, body,
                                                 signature))
    if not settings.sendgrid_secret:
        return False
    if secret is not None:
        return bool(secret) and constant_time_equal(secret, settings.sendgrid_secret)
    return basic_auth_valid(request.authorization, "sendgrid", settings.sendgrid_secret)


@blueprint.post("/sendgrid", defaults={"secret": None})
@blueprint.post("/sendgrid/<secret>")
def sendgrid(secret: str | None):
    """SendGrid Inbound Parse: parsed fields, or the raw message in ``email``."""
    settings = get_settings()
    if not (settings.sendgrid_public_key or settings.sendgrid_secret):
        return error(404, "the SendGrid webhook is off: set SPAMSIFT_SENDGRID_PUBLIC_KEY or "
                          "SPAMSIFT_SENDGRID_SECRET")
    body = request.get_data()
    if not _sendgrid_authorised(settings, secret, body):
        return error(SENDGRID.unauthorized, "bad or missing SendGrid signature or secret")
    if request.mimetype != "multipart/form-data":
        return error(415, "SendGrid Inbound Parse posts multipart/form-data")
    fields = _multipart_fields(body, request.headers.get("Content-Type", ""))
    signature = request.headers.get("X-Twilio-Email-Event-Webhook-Signature")
    remember_signature = (lambda: remember("sendgrid", signature,
                                           settings.webhook_timestamp_window)) \
        if settings.sendgrid_public_key and signature else None
    if settings.sendgrid_public_key and signature and seen_before("sendgrid", signature):
        return error(SENDGRID.unauthorized, "SendGrid signature already used (replay)")
    if "email" in fields:
        return accept(fields["email"][0], "webhook:sendgrid", SENDGRID, remember_signature)
    try:
        charsets = json.loads(fields.get("charsets", (b"{}",))[0] or b"{}")
        info = json.loads(fields.get("attachment-info", (b"{}",))[0] or b"{}")
    except ValueError:
        return error(SENDGRID.reject, "charsets and attachment-info must be JSON")

    def text_field(name: str) -> str | None:
        if name not in fields:
            return None
        return decode_bytes(fields[name][0], charsets.get(name))[0]

    header_block = (text_field("headers") or "").replace("\r\n", "\n")
    headers = []
    for line in header_block.split("\n"):
        if line[:1] in (" ", "\t") and headers:
            headers[-1] = (headers[-1][0], headers[-1][1] + " " + line.strip())
        elif ":" in line:
            name, value = line.split(":", 1)
            headers.append((name, value.strip()))
    if not headers:
        headers = [("From", text_field("from") or ""), ("To", text_field("to") or ""),
                   ("Subject", text_field("subject") or "")]
    attachments = []
    for name in sorted(fields):
        data, filename, content_type = fields[name]
        if SENDGRID_ATTACHMENT.fullmatch(name):
            meta = info.get(name, {}) if isinstance(info, dict) else {}
            attachments.append(Attachment(meta.get("filename") or filename,
                                          meta.get("type") or content_type
                                          or "application/octet-stream", data))
    raw = compose_message(headers, text_field("text"), text_field("html"), attachments,
                          "sendgrid")
    return accept(raw, "webhook:sendgrid", SENDGRID, remember_signature)


# --- Postmark -----------------------------------------------------------------------------


@blueprint.post("/postmark")
def postmark():
    """Postmark inbound JSON, with HTTP basic auth in the webhook URL."""
    settings = get_settings()
    if not (settings.postmark_username and settings.postmark_password):
        return error(404, "the Postmark webhook is off: set SPAMSIFT_POSTMARK_USERNAME and "
                          "SPAMSIFT_POSTMARK_PASSWORD")
    if not basic_auth_valid(request.authorization, settings.postmark_username,
                            settings.postmark_password):
        return error(POSTMARK.unauthorized, "bad or missing basic auth credentials",
                     **{"WWW-Authenticate": 'Basic realm="spamsift"'})
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict):
        return error(POSTMARK.reject, "the body must be Postmark's inbound JSON object")
    headers = [(h.get("Name", ""), h.get("Value", "")) for h in payload.get("Headers") or []
               if isinstance(h, dict)]
    known = {name.lower() for name, _ in headers}
    for name, key in (("From", "From"), ("To", "To"), ("Cc", "Cc"), ("Subject", "Subject"),
                      ("Date", "Date"), ("Message-ID", "MessageID")):
        if name.lower() not in known and payload.get(key):
            value = payload[key]
            if name == "Message-ID" and not str(value).startswith("<"):
                value = f"<{value}>"
            headers.append((name, str(value)))
    try:
        attachments = [Attachment(a.get("Name"), a.get("ContentType") or
                                  "application/octet-stream",
                                  base64.b64decode(a.get("Content") or "", validate=True))
                       for a in payload.get("Attachments") or []]
    except (binascii.Error, ValueError, AttributeError):
        return error(POSTMARK.reject, "an attachment's Content is not valid base64")
    raw = compose_message(headers, payload.get("TextBody"), payload.get("HtmlBody"),
                          attachments, "postmark")
    return accept(raw, "webhook:postmark", POSTMARK)
