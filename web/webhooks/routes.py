"""The webhook endpoints, one per provider format."""

from __future__ import annotations

import base64
import binascii
import json
import re

from flask import request
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import RequestEntityTooLarge

from core.auth import constant_time_equal, token_grant
from core.compose import Attachment, compose_message
from core.config import get_settings
from core.db import session_scope
from core.mail import decode_bytes
from core.models import Scope
from web.webhooks import blueprint
from web.webhooks.accept import (MAILGUN, POSTMARK, RAW, SENDGRID, Codes, accept, error,
                                 retry_later)
from web.webhooks.forms import FormError, FormField, form_fields
from web.webhooks.verify import (Claim, ReplayMemoryUnavailable, basic_auth_valid, claim_once,
                                 mailgun_signature_valid, sendgrid_signature_valid,
                                 timestamp_fresh)

RAW_TYPES = {"message/rfc822", "application/octet-stream", "text/plain"}
MAILGUN_ATTACHMENT = re.compile(r"attachment-\d+")
SENDGRID_ATTACHMENT = re.compile(r"attachment\d+")


@blueprint.errorhandler(RequestEntityTooLarge)
def body_too_large(_error):
    """A body over MAX_CONTENT_LENGTH gets the provider's "do not retry" status."""
    codes = {"mailgun": MAILGUN, "sendgrid": SENDGRID, "postmark": POSTMARK}.get(
        (request.endpoint or "").removeprefix("webhooks.").split("_")[0], RAW)
    return error(codes.reject, "request body over the size limit for a message of "
                               f"SPAMSIFT_MAX_MESSAGE_BYTES ({get_settings().max_message_bytes})")


def _claim(kind: str, signed: str | bytes, codes: Codes) -> tuple[Claim | None, object]:
    """(claim, None), or (None, the answer) for a replay or when Redis is down."""
    try:
        claim = claim_once(kind, signed, get_settings().webhook_timestamp_window)
    except ReplayMemoryUnavailable:
        return None, retry_later("replay memory (Redis) unavailable")
    if claim is None:
        return None, error(codes.unauthorized, f"{kind} delivery already used (replay)")
    return claim, None


def _form(codes: Codes) -> tuple[dict[str, FormField] | None, object]:
    try:
        return form_fields(request.get_data(), request.headers.get("Content-Type", "")), None
    except FormError as exc:
        return None, error(codes.reject, str(exc))


@blueprint.post("/raw")
def raw_mime():
    """The whole message as the body (Content-Type message/rfc822), bearer token auth."""
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else ""
    try:
        with session_scope() as session:
            grant = token_grant(session, token) if token else None
    except DBAPIError:
        return retry_later("database unavailable")
    if grant is None:
        return error(RAW.unauthorized, "a valid API token is required (Authorization: Bearer)",
                     **{"WWW-Authenticate": "Bearer"})
    if not grant.allows(Scope.INGEST):
        return error(403, "this token lacks the ingest scope")
    if request.mimetype not in RAW_TYPES:
        return error(415, "send the message as Content-Type: message/rfc822")
    return accept(request.get_data(), "webhook:raw", RAW)


# --- Mailgun ------------------------------------------------------------------------------


def _mailgun_delivery(secret: str | None):
    """(fields, claim, None) for an authentic first delivery, else (None, None, answer).

    Mailgun signs only timestamp and token, not the message, so a second factor (a secret
    path segment or basic auth) can be required too; each token is claimed once.
    """
    settings = get_settings()
    if not settings.mailgun_signing_key:
        return None, None, error(404, "the Mailgun webhook is off: set "
                                      "SPAMSIFT_MAILGUN_SIGNING_KEY")
    if settings.mailgun_webhook_secret and not (
            (secret is not None and constant_time_equal(secret,
                                                        settings.mailgun_webhook_secret))
            or basic_auth_valid(request.authorization, "mailgun",
                                settings.mailgun_webhook_secret)):
        return None, None, error(MAILGUN.unauthorized, "missing or wrong webhook secret (URL "
                                                       "segment or basic auth password)")
    fields, failure = _form(MAILGUN)
    if failure is not None:
        return None, None, failure
    timestamp, token, signature = (fields[name].text() if name in fields else ""
                                   for name in ("timestamp", "token", "signature"))
    if not (timestamp and token and signature) or not mailgun_signature_valid(
            settings.mailgun_signing_key, timestamp, token, signature):
        return None, None, error(MAILGUN.unauthorized, "bad or missing Mailgun signature")
    if not timestamp_fresh(timestamp, settings.webhook_timestamp_window):
        return None, None, error(MAILGUN.unauthorized, "Mailgun timestamp outside the "
                                                       "allowed window")
    claim, failure = _claim("mailgun", timestamp + token, MAILGUN)
    return fields, claim, failure


@blueprint.post("/mailgun/mime", defaults={"secret": None})
@blueprint.post("/mailgun/<secret>/mime")
def mailgun_mime(secret: str | None):
    """A Mailgun route whose URL ends in 'mime': the raw message in ``body-mime``."""
    fields, claim, failure = _mailgun_delivery(secret)
    if failure is not None:
        return failure
    return _mailgun_raw(fields, claim)


def _mailgun_raw(fields: dict[str, FormField], claim: Claim):
    if "body-mime" not in fields:
        claim.release()
        return error(MAILGUN.reject, "no body-mime field: use the /mailgun endpoint for "
                                     "parsed routes")
    return accept(fields["body-mime"].data, "webhook:mailgun", MAILGUN, claim=claim)


@blueprint.post("/mailgun", defaults={"secret": None})
@blueprint.post("/mailgun/<secret>")
def mailgun_parsed(secret: str | None):
    """A Mailgun route posting parsed fields; the message is rebuilt from them."""
    fields, claim, failure = _mailgun_delivery(secret)
    if failure is not None:
        return failure
    if "body-mime" in fields:
        return _mailgun_raw(fields, claim)

    def text(name: str) -> str | None:
        return fields[name].text() if name in fields else None

    try:
        headers = [(str(n), str(v)) for n, v in json.loads(text("message-headers") or "[]")]
        content_ids = {str(name): str(cid) for cid, name in
                       json.loads(text("content-id-map") or "{}").items()}
    except (ValueError, TypeError, AttributeError):
        claim.release()
        return error(MAILGUN.reject, "message-headers must be a JSON list of [name, value] "
                                     "and content-id-map a JSON object")
    if not headers:
        headers = [("From", text("from") or text("sender") or ""),
                   ("To", text("recipient") or ""), ("Subject", text("subject") or "")]
    attachments = [Attachment(field.filename, field.content_type or "application/octet-stream",
                              field.data, content_ids.get(name))
                   for name, field in sorted(fields.items(), key=_numbered)
                   if MAILGUN_ATTACHMENT.fullmatch(name)]
    rebuilt = compose_message(headers, text("body-plain"), text("body-html"), attachments,
                              "mailgun")
    return accept(rebuilt.raw, "webhook:mailgun", MAILGUN, rebuilt.content_digest, claim)


def _numbered(item: tuple[str, object]) -> tuple[int, str]:
    """attachment-2 before attachment-10."""
    digits = re.sub(r"\D", "", item[0])
    return (int(digits) if digits else 0, item[0])


# --- SendGrid -----------------------------------------------------------------------------


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
    fields, failure = _form(SENDGRID)
    if failure is not None:
        return failure
    claim = None
    if settings.sendgrid_public_key:
        # The signature covers timestamp + body: that, not the signature's text, is claimed.
        timestamp = request.headers["X-Twilio-Email-Event-Webhook-Timestamp"]
        claim, failure = _claim("sendgrid", timestamp.encode() + body, SENDGRID)
        if failure is not None:
            return failure
    if "email" in fields:
        return accept(fields["email"].data, "webhook:sendgrid", SENDGRID, claim=claim)
    try:
        charsets = json.loads(fields["charsets"].data if "charsets" in fields else b"{}")
        info = json.loads(fields["attachment-info"].data if "attachment-info" in fields
                          else b"{}")
        if not (isinstance(charsets, dict) and isinstance(info, dict)):
            raise ValueError("not an object")
    except ValueError:
        if claim is not None:
            claim.release()
        return error(SENDGRID.reject, "charsets and attachment-info must be JSON objects")

    def text_field(name: str) -> str | None:
        if name not in fields:
            return None
        return decode_bytes(fields[name].data, charsets.get(name))[0]

    headers = _header_block(text_field("headers") or "")
    if not headers:
        headers = [("From", text_field("from") or ""), ("To", text_field("to") or ""),
                   ("Subject", text_field("subject") or "")]
    attachments = []
    for name, field in sorted(fields.items(), key=_numbered):
        if SENDGRID_ATTACHMENT.fullmatch(name):
            meta = info.get(name) if isinstance(info.get(name), dict) else {}
            content_id = meta.get("content-id")
            attachments.append(Attachment(
                meta.get("filename") or field.filename,
                meta.get("type") or field.content_type or "application/octet-stream",
                field.data, f"<{content_id.strip('<>')}>" if content_id else None))
    rebuilt = compose_message(headers, text_field("text"), text_field("html"), attachments,
                              "sendgrid")
    return accept(rebuilt.raw, "webhook:sendgrid", SENDGRID, rebuilt.content_digest, claim)


def _header_block(block: str) -> list[tuple[str, str]]:
    """A raw header block as (name, value) pairs, folded lines joined."""
    headers: list[tuple[str, str]] = []
    for line in block.replace("\r\n", "\n").split("\n"):
        if line[:1] in (" ", "\t") and headers:
            headers[-1] = (headers[-1][0], headers[-1][1] + line)
        elif ":" in line:
            name, value = line.split(":", 1)
            headers.append((name, value.strip()))
    return headers


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
    headers = [(str(h.get("Name", "")), str(h.get("Value", "")))
               for h in payload.get("Headers") or [] if isinstance(h, dict)]
    known = {name.lower() for name, _ in headers}
    for name, key in (("From", "From"), ("To", "To"), ("Cc", "Cc"), ("Subject", "Subject"),
                      ("Date", "Date"), ("Message-ID", "MessageID")):
        if name.lower() not in known and payload.get(key):
            value = str(payload[key])
            if name == "Message-ID" and not value.startswith("<"):
                value = f"<{value}>"
            headers.append((name, value))
    try:
        attachments = [Attachment(a.get("Name"), a.get("ContentType") or
                                  "application/octet-stream",
                                  base64.b64decode(a.get("Content") or "", validate=True),
                                  f"<{a['ContentID'].strip('<>')}>" if a.get("ContentID")
                                  else None)
                       for a in payload.get("Attachments") or []]
    except (binascii.Error, ValueError, AttributeError, TypeError):
        return error(POSTMARK.reject, "an attachment's Content is not valid base64")
    text, html = (payload.get(key) for key in ("TextBody", "HtmlBody"))
    rebuilt = compose_message(headers, None if text is None else str(text),
                              None if html is None else str(html), attachments, "postmark")
    return accept(rebuilt.raw, "webhook:postmark", POSTMARK, rebuilt.content_digest)
