"""The outgoing verdict callback, to a small local HTTP server: signed, retried on 5xx,
never redirected, never unsigned or over plain http to another host."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner

from cli.main import cli
from core.config import SettingError
from core.db import session_scope
from core.intake import Incoming, store_emails
from core.models import Label, Prediction, TrainedModel, Verdict
from tests.conftest import FIXTURES
from tests.integration.test_import import wait_for

SECRET = "callback-test-secret-of-32-bytes"


@pytest.fixture
def receiver():
    """Answers 503 to the first post and 200 to the rest, keeping what it got."""
    received: list[tuple[int, dict, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status = 503 if not received else 200
            received.append((status, dict(self.headers), body))
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/verdicts", received
    server.shutdown()


def test_verdicts_are_posted_signed_and_retried(committed, celery_worker, settings, receiver):
    url, received = receiver
    settings(CALLBACK_URL=url, CALLBACK_SECRET=SECRET, CALLBACK_RETRY_SECONDS=0.2)
    with session_scope() as session:
        for line in (FIXTURES / "labeled.jsonl").read_text().splitlines():
            record = json.loads(line)
            raw = f"Subject: {record['subject']}\n\n{record['text']}\n".encode()
            store_emails(session, [Incoming(raw, "test", Label(record["label"]), "import")])
    assert CliRunner().invoke(cli, ["train", "baseline", "--wait"]).exit_code == 0

    result = CliRunner().invoke(cli, ["classify", str(FIXTURES / "mail" / "plain.eml"),
                                      "--json"])
    assert result.exit_code == 0, result.output
    email_id = json.loads(result.stdout)["email_id"]

    wait_for(lambda: len(received) >= 2, timeout=30)
    assert [status for status, _, _ in received[:2]] == [503, 200]
    _, headers, body = received[1]
    timestamp, mac = (part.split("=", 1)[1] for part in
                      headers["X-Spamsift-Signature"].split(","))
    expected = hmac.new(SECRET.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    assert hmac.compare_digest(mac, expected.hexdigest())
    payload = json.loads(body)
    assert payload["email_id"] == email_id
    assert payload["message_id"] == "<lunch-1@example.org>"
    assert payload["verdict"] in ("spam", "unsure", "ham")
    assert received[0][2] == body  # the retry sends the same verdict


def serve(status: int, location: str | None = None):
    """A receiver on 127.0.0.1 answering ``status`` to every post; returns (server, hits)."""
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self):
            hits.append(self.command)
            self.send_response(status)
            if location:
                self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = _answer

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, hits


def a_prediction() -> int:
    with session_scope() as session:
        email_id = store_emails(session, [Incoming(b"Subject: hi\r\n\r\nhello\r\n",
                                                   "test")])[0].email_id
        model = TrainedModel(kind="test")
        session.add(model)
        session.flush()
        prediction = Prediction(email_id=email_id, model_id=model.id, p_spam=0.9,
                                verdict=Verdict.SPAM, latency_ms=1.0)
        session.add(prediction)
        session.flush()
        return prediction.id


@pytest.mark.parametrize("status", [302, 307])
def test_a_redirect_is_a_logged_failure_never_followed(committed, celery_worker, settings,
                                                       caplog, status):
    elsewhere, elsewhere_hits = serve(200)
    redirecting, hits = serve(status, f"http://127.0.0.1:{elsewhere.server_port}/stolen")
    try:
        settings(CALLBACK_URL=f"http://127.0.0.1:{redirecting.server_port}/verdicts",
                 CALLBACK_SECRET=SECRET, CALLBACK_RETRY_SECONDS=0.1)
        caplog.set_level(logging.INFO, logger="workers.callback")
        from workers.callback import deliver_verdict

        prediction_id = a_prediction()
        deliver_verdict.delay(prediction_id)
        wait_for(lambda: hits, timeout=20)
        time.sleep(1.0)  # time to follow the redirect or retry, if either were (wrongly) done
    finally:
        redirecting.shutdown()
        elsewhere.shutdown()
    assert elsewhere_hits == [] and hits == ["POST"]
    record = wait_for(lambda: next((r for r in caplog.records if "redirect" in r.getMessage()),
                                   None))
    assert record.levelno == logging.ERROR and str(prediction_id) in record.getMessage()


@pytest.mark.parametrize("values,problem", [
    ({"CALLBACK_SECRET": ""}, "SPAMSIFT_CALLBACK_SECRET must be at least 32 bytes"),
    ({"CALLBACK_SECRET": "too-short"}, "SPAMSIFT_CALLBACK_SECRET must be at least 32 bytes"),
    ({"CALLBACK_SECRET": SECRET, "CALLBACK_URL": "http://hooks.example.org/verdicts"},
     "SPAMSIFT_CALLBACK_URL must be an https URL"),
])
def test_unsigned_or_plain_http_callbacks_stop_everything_at_start(committed, settings,
                                                                  monkeypatch, values, problem):
    """No process starts to send verdicts unsigned, or in clear to another host: the
    settings refuse, so ``spamsift`` (any command, the workers included) and the web app
    say why and stop."""
    monkeypatch.setenv("SPAMSIFT_CALLBACK_URL", "https://hooks.example.org/verdicts")
    with pytest.raises(SettingError, match=problem):
        settings(**values)
    result = CliRunner().invoke(cli, ["models"])
    assert result.exit_code == 1 and problem in result.output
    from core.config import get_settings
    from web import create_app

    get_settings.cache_clear()
    with pytest.raises(SettingError, match=problem):
        create_app()
