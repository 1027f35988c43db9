"""The common path of every webhook: size limit, store (commit), enqueue, answer."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import g, jsonify, request
from sqlalchemy.exc import DBAPIError

from core.config import get_settings
from core.mailbox import wait_for_prediction
from core.models import Prediction
from core.verdicts import spam_headers, verdict_view
from web.webhooks.verify import Claim
from workers.client import accept_message

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Codes:
    """How a provider reads our answers."""

    accepted: int  # stored; the verdict comes later
    reject: int  # bad input that a retry cannot fix (too large, unreadable): stop retrying
    unauthorized: int  # a forged, unsigned or replayed request: an answer the provider
    # retries, so a rotated key or a lost replay claim loses no mail


RAW = Codes(accepted=202, reject=413, unauthorized=401)
# Mailgun retries everything but 200 and 406 for 8 hours, then drops the mail.
MAILGUN = Codes(accepted=200, reject=406, unauthorized=401)
# SendGrid retries 5xx answers only (for 3 days); any 4xx ends it, so a signature that does
# not verify (a rotated key, a clock drift) is answered 503 to keep the mail coming.
SENDGRID = Codes(accepted=200, reject=413, unauthorized=503)
# Postmark retries everything but 200 and 403 (ten times in about 10 hours).
POSTMARK = Codes(accepted=200, reject=403, unauthorized=401)


def error(status: int, message: str, **headers):
    response = jsonify(error=message)
    response.status_code = status
    response.headers.update(headers)
    return response


def retry_later(message: str):
    """503 with Retry-After: every provider retries it."""
    g.webhook_outcome = "retry_later"
    return error(503, f"{message}; retry later", **{"Retry-After": "30"})


def too_large(codes: Codes, size: int, limit: int):
    return error(codes.reject, f"message of {size} bytes is over the {limit}-byte limit "
                               "(SPAMSIFT_MAX_MESSAGE_BYTES)")


def accept(raw: bytes, source: str, codes: Codes, content_digest: bytes | None = None,
           claim: Claim | None = None):
    """Store ``raw`` and enqueue its classification. ``content_digest`` names a message
    rebuilt from parsed fields (``core.compose``); ``claim`` is the signed delivery's replay
    claim, given back when the email could not be stored so the provider's retry passes."""
    settings = get_settings()
    if len(raw) > settings.max_message_bytes:
        return _refuse(claim, too_large(codes, len(raw), settings.max_message_bytes))
    if not raw.strip():
        return _refuse(claim, error(codes.reject, "empty message"))
    try:
        stored = accept_message(raw, source, content_digest)
    except DBAPIError as exc:
        log.error("webhook %s: database unavailable: %s", source, exc)
        return _refuse(claim, retry_later("database unavailable"))
    body = {"id": stored.email_id, "duplicate": not stored.created, "status": "accepted",
            "status_url": f"/api/emails/{stored.email_id}"}
    g.webhook_outcome = "accepted" if stored.created else "duplicate"
    prediction = _wait_for_verdict(stored.email_id, request.args.get("wait"))
    if prediction is None:
        return jsonify(body), codes.accepted
    response = jsonify({**body, "status": "classified", **verdict_view(prediction)})
    response.headers.update(spam_headers(prediction))
    return response, 200


def _refuse(claim: Claim | None, response):
    if claim is not None:
        claim.release()
    return response


def _wait_for_verdict(email_id: int, wait: str | None) -> Prediction | None:
    if not wait:
        return None
    try:
        wait_ms = max(int(wait), 0)
    except ValueError:
        return None
    settings = get_settings()
    return wait_for_prediction(email_id, min(wait_ms, settings.webhook_max_wait_ms,
                                             settings.longest_request_wait_ms))
