"""Structured logs from real processes: a webhook's request id is in the web's line for it
and in the lines of the tasks it caused, in a separate worker process; no line holds the
mail's content or the token."""

from __future__ import annotations

from email.message import EmailMessage

import requests

from tests.conftest import TEST_BROKER_URL, TEST_DATABASE_URL
from tests.processes import json_lines
from tests.stack import deployment

REQUEST_ID = "webhook-7f3a9c"
SUBJECT, BODY = "Quokka-subject-5150 limited offer", "Zebra-body-8080 claim your prize now"


def test_a_request_id_follows_a_webhook_into_the_tasks_it_caused(
        committed, broker, session_worker_paused, tmp_path):
    message = EmailMessage()
    message["From"], message["To"] = "offers@example.biz", "me@example.com"
    message["Subject"], message["Message-ID"] = SUBJECT, "<request-id@tests.spamsift>"
    message.set_content(BODY)
    with deployment(tmp_path / "stack", TEST_DATABASE_URL, TEST_BROKER_URL) as stack:
        stack.start("worker", "worker", "-Q", "realtime,bulk,training", "--share-realtime",
                    "-c", "1")
        labeled = stack.train_model()
        token = stack.api_token()
        with stack.web("-w", "1") as web:
            answer = requests.post(f"{web.url}/webhooks/raw?wait=20000", data=bytes(message),
                                   timeout=60, headers={
                                       "Authorization": f"Bearer {token}",
                                       "Content-Type": "message/rfc822",
                                       "X-Request-ID": REQUEST_ID})
            assert answer.status_code == 200 and answer.json()["status"] == "classified"
            assert answer.headers["X-Request-ID"] == REQUEST_ID
            stack.wait_until_each_classified_once(60, expected=labeled + 1)
        worker_log = stack.log("worker").read_text()
    web_lines = json_lines(web.output)
    assert [(line["method"], line["path"], line["status"]) for line in web_lines
            if line.get("request_id") == REQUEST_ID] == [("POST", "/webhooks/raw", 200)]
    tasks = {line.get("task") for line in json_lines(worker_log)
             if line.get("request_id") == REQUEST_ID}
    assert "spamsift.classify_email" in tasks, worker_log[-3000:]
    for text in (web.output, worker_log):
        for secret in ("Quokka", "Zebra", token):
            assert secret not in text
