"""Post each realtime verdict to a configured URL, signed, retried with backoff.

The body is JSON; ``X-Spamsift-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of
"<t>.<body>" with SPAMSIFT_CALLBACK_SECRET>`` lets the receiver check it came from here and
is fresh (the settings refuse a callback URL without a secret of 32 bytes or more, and plain
http except to loopback hosts). Network errors, 408, 429 and 5xx answers are retried
(backoff doubling from SPAMSIFT_CALLBACK_RETRY_SECONDS, 8 tries); other 4xx answers are
final, and so are redirects, which are never followed: the verdict goes to the configured
URL or nowhere.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time

import requests
from celery import shared_task

from core.config import get_settings
from core.db import session_scope
from core.models import Email, Prediction
from core.verdicts import verdict_view
from workers.names import DELIVER_VERDICT

log = logging.getLogger(__name__)
MAX_TRIES = 8
RETRY_STATUSES = {408, 429}


def signature(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verdict_payload(prediction: Prediction, email: Email) -> dict:
    return {"email_id": email.id, "message_id": email.message_id, "source": email.source,
            **verdict_view(prediction)}


@shared_task(name=DELIVER_VERDICT, bind=True, max_retries=MAX_TRIES - 1)
def deliver_verdict(self, prediction_id: int) -> int | None:
    settings = get_settings()
    if not settings.callback_url:
        return None
    with session_scope() as session:
        prediction = session.get(Prediction, prediction_id)
        if prediction is None:
            return None
        body = json.dumps(verdict_payload(prediction, prediction.email),
                          sort_keys=True).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "spamsift",
               "X-Spamsift-Signature": signature(settings.callback_secret, int(time.time()),
                                                 body)}
    try:
        response = requests.post(settings.callback_url, data=body, headers=headers, timeout=10,
                                 allow_redirects=False)
        status = response.status_code
    except requests.RequestException as exc:
        status, problem = None, str(exc)
    else:
        problem = f"HTTP {status}"
    if status is not None and 300 <= status < 400:
        log.error("verdict callback for prediction %s answered with a redirect (%s, to %s): "
                  "not followed, not retried; set SPAMSIFT_CALLBACK_URL to the final URL",
                  prediction_id, problem, response.headers.get("Location", "nowhere"))
        return status
    if status is not None and status < 300:
        return status
    if status is not None and status < 500 and status not in RETRY_STATUSES:
        log.warning("verdict callback for prediction %s refused (%s); not retried",
                    prediction_id, problem)
        return status
    countdown = settings.callback_retry_seconds * 2 ** self.request.retries
    log.info("verdict callback for prediction %s failed (%s); retry in %.1f s",
             prediction_id, problem, countdown)
    raise self.retry(countdown=countdown, exc=RuntimeError(problem))
