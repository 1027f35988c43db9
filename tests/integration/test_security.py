"""Who can get in: the secret key, dashboard sessions, cookies and HSTS, login limits behind
a proxy and without Redis. Real PostgreSQL and Redis, real processes where it matters."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime

import pytest
import requests
from click.testing import CliRunner
from sqlalchemy import text

from cli.main import cli
from core.auth import create_api_token, create_user
from core.config import SettingError
from core.db import session_scope
from core.models import Role
from tests.conftest import REPO_ROOT
from tests.integration.conftest import csrf_token, login
from web import create_app

STRONG_KEY = "k" * 32


@pytest.fixture
def make_app(committed, broker):
    """create_app() after the test changed settings; rate-limit counters start empty."""
    from web.extensions import limiter

    def make():
        app = create_app()
        with app.app_context():
            limiter.reset()
        return app

    return make


@pytest.fixture
def people(committed):
    with session_scope() as session:
        alice = create_user(session, "alice", "correct horse", Role.ADMIN)
        create_user(session, "victor", "battery staple", Role.VIEWER)
        return {"ingest": create_api_token(session, alice, "mta", scopes={"ingest"})}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def env_without_key(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "SPAMSIFT_SECRET_KEY"}
    env["PYTHONPATH"] = str(REPO_ROOT)
    env.update(extra)
    return env


# --- The secret key ------------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, "", "dev-only-secret-change-me", "x" * 31])
def test_the_app_refuses_a_missing_public_or_short_secret_key(settings, key):
    settings(SECRET_KEY=key)
    with pytest.raises(SettingError, match="SPAMSIFT_SECRET_KEY"):
        create_app()


def test_a_long_key_or_the_development_flag_lets_the_app_start(settings):
    settings(SECRET_KEY=STRONG_KEY)
    assert create_app().secret_key == STRONG_KEY
    settings(SECRET_KEY=None, DEVELOPMENT="true")
    assert create_app().secret_key


def test_spamsift_web_exits_with_a_clear_error_on_a_weak_key():
    port = free_port()
    try:
        result = subprocess.run([sys.executable, "-m", "cli", "web", "--port", str(port)],
                                env=env_without_key(SPAMSIFT_SECRET_KEY="short"), cwd=REPO_ROOT,
                                capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("spamsift web served with a weak secret key")
    assert result.returncode != 0
    assert "SPAMSIFT_SECRET_KEY" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_spamsift_run_makes_keeps_and_uses_a_random_key(committed, broker, tmp_path):
    from flask import Flask

    from core.secret_key import ensure_secret_key_file

    var_dir = tmp_path / "var"
    port = free_port()
    log = open(tmp_path / "run.log", "w")
    process = subprocess.Popen([sys.executable, "-m", "cli", "run", "--port", str(port)],
                               env=env_without_key(SPAMSIFT_VAR_DIR=str(var_dir)),
                               cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        response = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                response = requests.get(f"http://127.0.0.1:{port}/login", timeout=5)
                break
            except requests.RequestException:
                time.sleep(0.5)
        assert response is not None and response.status_code == 200, \
            (tmp_path / "run.log").read_text()
        key_file = var_dir / "secret_key"
        assert key_file.stat().st_mode & 0o777 == 0o600
        key = key_file.read_text().strip()
        assert len(key) >= 32
        # The web process signs its session cookie with that key.
        signer = Flask(__name__)
        signer.secret_key = key
        serializer = signer.session_interface.get_signing_serializer(signer)
        assert "csrf_token" in serializer.loads(response.cookies["session"])
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    assert ensure_secret_key_file(var_dir) == key  # kept for the next run


# --- Sessions, cookies, HSTS -----------------------------------------------------------------


def test_logout_ends_the_session_even_for_a_copied_cookie(make_app, people):
    app = make_app()
    client = app.test_client()
    assert login(client, "alice", "correct horse").status_code == 302
    copied = client.get_cookie("session").value
    assert client.get("/").status_code == 200
    token = csrf_token(client, "/")
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    thief = app.test_client()
    thief.set_cookie("session", copied)
    response = thief.get("/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_sessions_are_short_lived(make_app, people, settings):
    settings(SESSION_HOURS=2)
    app = make_app()
    client = app.test_client()
    response = login(client, "alice", "correct horse")
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("session="))
    expires = parsedate_to_datetime(re.search(r"Expires=([^;]+)", cookie)[1])
    assert expires - datetime.now(timezone.utc) < timedelta(hours=2, minutes=1)
    assert client.get("/").status_code == 200
    with session_scope() as session:  # two hours later, as far as the server is concerned
        session.execute(text("UPDATE login_sessions SET expires_at = now() - interval '1 s'"))
    assert client.get("/").status_code == 302


@pytest.mark.parametrize("command", [["users", "passwd", "alice"], ["users", "disable", "alice"]])
def test_passwd_and_disable_end_the_users_sessions(make_app, people, command):
    app = make_app()
    alice, victor = app.test_client(), app.test_client()
    login(alice, "alice", "correct horse")
    login(victor, "victor", "battery staple")
    assert alice.get("/").status_code == 200
    result = CliRunner().invoke(cli, command, env={"SPAMSIFT_PASSWORD": "another password"})
    assert result.exit_code == 0, result.output
    assert alice.get("/").status_code == 302
    assert victor.get("/").status_code == 200  # other users keep theirs
    if command[1] == "passwd":
        assert login(alice, "alice", "another password").status_code == 302
    else:
        assert login(alice, "alice", "correct horse").status_code == 401


def test_cookies_are_secure_and_hsts_is_on_by_default(make_app, people, settings):
    client = make_app().test_client()
    response = login(client, "alice", "correct horse")
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("session="))
    assert "; Secure" in cookie and "; HttpOnly" in cookie
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    assert int(response.headers["Strict-Transport-Security"].split("=")[1]) >= 31536000

    settings(DEVELOPMENT="true")
    response = login(make_app().test_client(), "alice", "correct horse")
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("session="))
    assert "; Secure" not in cookie and "Strict-Transport-Security" not in response.headers

    settings(DEVELOPMENT=None, SECURE_COOKIES="false", HSTS_SECONDS="0")
    response = make_app().test_client().get("/login")
    assert "; Secure" not in response.headers["Set-Cookie"]
    assert "Strict-Transport-Security" not in response.headers


# --- Login limits ----------------------------------------------------------------------------


def test_behind_a_trusted_proxy_each_client_has_its_own_login_limit(make_app, people,
                                                                    settings):
    settings(TRUSTED_PROXIES=1)
    client = make_app().test_client()
    codes = [login(client, "alice", "nope", "198.51.100.1").status_code for _ in range(11)]
    assert codes[:10] == [401] * 10 and codes[10] == 429
    assert login(client, "victor", "battery staple", "198.51.100.2").status_code == 302


def test_without_a_trusted_proxy_forwarded_addresses_are_ignored(make_app, people):
    client = make_app().test_client()
    codes = [login(client, "alice", "nope", f"198.51.100.{i}").status_code for i in range(11)]
    assert codes[-1] == 429


def test_failed_logins_are_limited_per_username_too(make_app, people, settings):
    settings(TRUSTED_PROXIES=1, LOGIN_USERNAME_RATE_LIMIT="5 per hour")
    client = make_app().test_client()
    for i in range(6):  # successful logins do not count
        assert login(client, "alice", "correct horse", f"203.0.113.{i}").status_code == 302
    codes = [login(client, "alice", "guess", f"198.51.100.{i}").status_code for i in range(5)]
    assert codes == [401] * 5
    refused = login(client, "alice", "correct horse", "192.0.2.1")
    assert refused.status_code == 429 and "Too many" in refused.get_data(as_text=True)
    assert login(client, "ALICE", "correct horse", "192.0.2.2").status_code == 429
    assert login(client, "victor", "battery staple", "192.0.2.3").status_code == 302


def test_login_fails_closed_without_redis_while_webhooks_stay_open(make_app, people, settings):
    settings(BROKER_URL="redis://127.0.0.1:1/0")
    client = create_app().test_client()  # (no counters to reset: Redis is unreachable)
    refused = login(client, "alice", "correct horse")
    assert refused.status_code == 503
    assert "try again" in refused.get_data(as_text=True).lower()
    assert "Retry-After" in refused.headers
    delivered = client.post("/webhooks/raw", content_type="message/rfc822",
                            data=b"From: a@example.com\r\nSubject: hi\r\n\r\nbody\r\n",
                            headers={"Authorization": f"Bearer {people['ingest']}"})
    assert delivered.status_code == 202


def test_webhooks_over_their_rate_limit_get_429_with_retry_after(make_app, people, settings):
    settings(WEBHOOK_RATE_LIMIT="3 per minute")
    client = make_app().test_client()
    codes, last = [], None
    for n in range(4):
        last = client.post("/webhooks/raw", content_type="message/rfc822",
                           data=f"From: a@example.com\r\nSubject: {n}\r\n\r\nbody\r\n".encode(),
                           headers={"Authorization": f"Bearer {people['ingest']}"})
        codes.append(last.status_code)
    assert codes == [202, 202, 202, 429]
    assert "rate limit exceeded" in last.get_json()["error"]
    assert 0 < int(last.headers["Retry-After"]) <= 60
