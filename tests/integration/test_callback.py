"""The outgoing verdict callback, to a small local HTTP server: signed, retried on 5xx."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner

from cli.main import cli
from core.db import session_scope
from core.intake import Incoming, store_emails
from core.models import Label
from tests.conftest import FIXTURES
from tests.integration.test_import import wait_for

SECRET = "callback-test-secret"


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
