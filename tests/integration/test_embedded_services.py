"""The laptop path: no service URLs set, so spamsift runs its own PostgreSQL and Redis."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
import requests

from core import services
from tests.conftest import FIXTURES


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spamsift(env, *args, timeout=180) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "cli", *args], env=env, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, f"spamsift {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.mark.slow
def test_embedded_services_end_to_end(tmp_path):
    var_dir = tmp_path / "var"
    env = {k: v for k, v in os.environ.items()
           if k not in ("SPAMSIFT_DATABASE_URL", "SPAMSIFT_BROKER_URL")}
    env["SPAMSIFT_VAR_DIR"] = str(var_dir)
    processes: list[subprocess.Popen] = []
    try:
        up = spamsift(env, "up")
        assert "embedded under" in up.stdout and "schema up to date" in up.stdout
        imported = spamsift(env, "import", str(FIXTURES / "mail"), "--label", "ham")
        assert "imported 18 (ham 18)" in imported.stdout

        port = free_port()
        log = open(tmp_path / "processes.log", "w")
        for args in (["worker", "--pool", "solo"], ["web", "--port", str(port), "-w", "1"]):
            processes.append(subprocess.Popen([sys.executable, "-m", "cli", *args], env=env,
                                              stdout=log, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 90
        body = None
        while time.monotonic() < deadline:
            try:
                response = requests.get(f"http://127.0.0.1:{port}/healthz/details", timeout=5)
                body = response.json()
                if response.status_code == 200 and body["status"] == "ok":
                    break
            except requests.RequestException:
                pass
            time.sleep(0.5)
        assert body and body["status"] == "ok", (body, (tmp_path / "processes.log").read_text())

        # Another process finds the same embedded database, where the worker parsed and
        # indexed the mail (no model is active: it waits parsed).
        url = services.start_embedded_postgres(var_dir).replace("postgresql+psycopg", "postgresql")
        with psycopg.connect(url) as conn:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                counts = dict(conn.execute(
                    "SELECT status::text || (indexed_with IS NOT NULL)::text, count(*)"
                    " FROM emails GROUP BY 1").fetchall())
                if counts == {"parsedtrue": 18}:
                    break
                time.sleep(0.5)
        assert counts == {"parsedtrue": 18}
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)
        down = spamsift(env, "down")
    assert "stopped: redis, postgres" in down.stdout
    assert not (var_dir / "postgres" / "postmaster.pid").exists()
    assert not Path(var_dir / "redis" / "redis.sock").exists()


@pytest.mark.slow
def test_embedded_database_stopped_webhooks_answer_503_then_accept_when_it_is_back(
        tmp_path, private_redis):
    """The embedded server stopped by another process (``spamsift down``, a crash): a
    running web process answers 503 as it would for a configured server, and takes mail
    again once ``spamsift up`` has started the server."""
    from core.auth import create_api_token, create_user
    from core.db import get_engine, session_scope
    from core.models import Role
    from tests.messages import generated_message
    from tests.servers import spamsift_web
    from tests.stack import post_raw, webhook_post

    var_dir = tmp_path / "var"
    env = {**os.environ, "SPAMSIFT_DATABASE_URL": "", "SPAMSIFT_VAR_DIR": str(var_dir),
           "SPAMSIFT_BROKER_URL": private_redis.url()}
    spamsift(env, "up")
    engine = get_engine(services.start_embedded_postgres(var_dir))
    try:
        with session_scope(engine) as session:
            token = create_api_token(session, create_user(session, "mta", "a-long-password",
                                                          Role.ADMIN), "mta")
        with spamsift_web("-w", "1", env=env) as web:
            assert post_raw(web.url, token, generated_message(1)).code == 202
            spamsift(env, "down")
            response = webhook_post(web.url, token, generated_message(2))
            assert response.status_code == 503, response.text
            assert response.headers["Retry-After"]
            health = requests.get(f"{web.url}/healthz/details", timeout=30)
            assert health.status_code == 503 and health.json()["database"]["ok"] is False
            spamsift(env, "up", "--no-migrate")
            assert post_raw(web.url, token, generated_message(2)).code == 202
    finally:
        engine.dispose()
        spamsift(env, "down")
