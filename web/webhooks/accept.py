"""The common path of every webhook: size limit, store (commit), enqueue, answer."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import jsonify, request
from sqlalchemy.exc import DBAPIError

from core.config import get_settings
from core.db import session_scope
from core.intake import store_delivery
from core.mailbox import wait_for_prediction
from core.models import Prediction
from workers.app import CLASSIFY_EMAIL, BrokerUnavailable, send

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Codes:
    """How a provider reads our answers."""

    accepted: int  # stored; the verdict comes later
    reject: int  # bad input that a retry cannot fix: the provider should stop
    unauthorized: int  # a forged or unsigned request


RAW = Codes(accepted=202, reject=413, unauthorized=401)
MAILGUN = Codes(accepted=200, reject=406, unauthorized=406)  # 406: rejected, no retries
SENDGRID = Codes(accepted=200, reject=413, unauthorized=401)
POSTMARK = Codes(accepted=200, reject=403, unauthorized=401)  # 403 stops Postmark's retries


def error(status: int, message: str, **headers):
    response = jsonify(error=message)
    response.status_code = status
    response.headers.update(headers)
    return response


def accept(raw: bytes, source: str, codes: Codes, after_store=None):
    """Store ``raw`` and enqueue its classification; ``after_store`` runs once it is safe
    (replay tokens are remembered only then, so a failed delivery can be retried)."""
    settings = get_settings()
    if len(raw) > settings.max_message_bytes:
        return error(codes.reject, f"message of {len(raw)} bytes is over the "
                                   f"{settings.max_message_bytes}-byte limit")
    if not raw.strip():
        return error(codes.reject, "empty message")
    try:
        with session_scope() as session:
            stored = store_delivery(session, raw, source)
    except DBAPIError as exc:
        log.error("webhook %s: database unavailable: %s", source, exc)
        return error(503, "database unavailable; retry later", **{"Retry-After": "30"})
    if after_store is not None:
        after_store()
    if stored.created:
        try:
            send(CLASSIFY_EMAIL, [stored.email_id])
        except BrokerUnavailable as exc:
            # The email is safe in the database; the reconciler will classify it.
            log.warning("webhook %s: email %s stored, not enqueued: %s", source,
                        stored.email_id, exc)
    body = {"id": stored.email_id, "duplicate": not stored.created, "status": "accepted",
            "status_url": f"/api/emails/{stored.email_id}"}
    prediction = _wait_for_verdict(stored.email_id, request.args.get("wait"),
                                   settings.webhook_max_wait_ms)
    if prediction is None:
        return jsonify(body), codes.accepted
    body.update(status="classified", verdict=prediction.verdict.value, p_spam=prediction.p_spam,
                thresholds=prediction.thresholds, model_id=prediction.model_id,
                spam_flag=prediction.verdict.value == "spam", spam_score=round(prediction.p_spam, 4))
    response = jsonify(body)
    response.headers["X-Spam-Flag"] = "YES" if prediction.verdict.value == "spam" else "NO"
    response.headers["X-Spam-Score"] = f"{prediction.p_spam:.4f}"
    response.headers["X-Spam-Status"] = prediction.verdict.value
    return response, 200


def _wait_for_verdict(email_id: int, wait: str | None, max_wait_ms: int) -> Prediction | None:
    if not wait:
        return None
    try:
        wait_ms = min(max(int(wait), 0), max_wait_ms)
    except ValueError:
        return None
    return wait_for_prediction(email_id, wait_ms)
