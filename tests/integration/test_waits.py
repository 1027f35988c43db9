"""Waiting for a verdict inside a request: notified, not polling; bounded below the server's
timeout; and a waiting request never holds up the others (real gunicorn, real PostgreSQL)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests
from sqlalchemy import event

from core.auth import create_api_token, create_user
from core.db import get_engine, session_scope
from core.intake import Incoming, store_emails
from core.mailbox import wait_for_prediction
from core.models import Email, Prediction, Role, TrainedModel, Verdict
from tests.servers import spamsift_web


def stored_email_and_model() -> tuple[int, int]:
    with session_scope() as session:
        [stored] = store_emails(session, [Incoming(b"Subject: hi\r\n\r\nhello\r\n", "test")])
        model = TrainedModel(kind="tfidf_nb", params={}, metrics={}, curves={}, confusion={},
                             thresholds={}, artifact={})
        session.add(model)
        session.flush()
        return stored.email_id, model.id


def test_a_waiting_request_is_woken_by_the_verdict_and_does_not_poll(committed):
    email_id, model_id = stored_email_and_model()
    statements = []
    engine = get_engine()

    def count(*_args):
        statements.append(1)

    event.listen(engine, "before_cursor_execute", count)
    try:
        started = time.monotonic()
        assert wait_for_prediction(email_id, 1000) is None
        assert time.monotonic() - started >= 0.9
        assert len(statements) <= 4  # a look before and after, not a query every 5 ms
    finally:
        event.remove(engine, "before_cursor_execute", count)

    result = {}
    waiter = threading.Thread(target=lambda: result.update(
        prediction=wait_for_prediction(email_id, 30_000), at=time.monotonic()))
    waiter.start()
    time.sleep(0.5)
    with session_scope() as session:
        prediction = Prediction(email_id=email_id, model_id=model_id, p_spam=0.9,
                                verdict=Verdict.SPAM, thresholds={}, evidence={},
                                latency_ms=1.0)
        session.add(prediction)
        session.flush()
        session.get(Email, email_id).verdict_id = prediction.id
    committed_at = time.monotonic()
    waiter.join(timeout=30)
    assert result["prediction"].verdict == Verdict.SPAM
    assert result["at"] - committed_at < 5  # woken by the commit, long before the deadline


def test_waiting_requests_do_not_hold_up_others_and_end_before_the_timeout(committed, broker):
    with session_scope() as session:
        user = create_user(session, "mta", "a-long-password", Role.ADMIN)
        token = create_api_token(session, user, "postfix")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "message/rfc822"}

    def deliver(number: int, query: str = "") -> tuple[int, float]:
        started = time.monotonic()
        response = requests.post(server.url + "/webhooks/raw" + query, headers=headers,
                                 data=f"Subject: {number}\r\n\r\nmessage {number}\r\n".encode(),
                                 timeout=60)
        return response.status_code, time.monotonic() - started

    # One gunicorn process; no model is active, so every wait runs to its end. The server
    # timeout of 10 s caps each wait at 5 s, whatever ?wait asks for.
    with spamsift_web("-w", "1", env={"SPAMSIFT_WEB_TIMEOUT": "10"}) as server:
        with ThreadPoolExecutor(max_workers=8) as pool:
            waiting = [pool.submit(deliver, n, "?wait=9000") for n in range(8)]
            time.sleep(1.0)
            status, took = deliver(100)
            assert status == 202
            assert took < 3  # answered while eight requests wait
            results = [future.result() for future in waiting]
    for status, took in results:
        assert status == 202
        assert took < 8.5  # cut to the 5-s wait limit (9 s were asked for)
