"""GET /healthz (public liveness) and /healthz/details (database, broker, workers per queue)
against real services, and with each of them really unreachable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO_ROOT
from tests.processes import start_command, stop_command
from tests.waiting import wait_for
from web import create_app

PROBE = """
import json
from web import create_app
response = create_app().test_client().get("/healthz/details")
print(json.dumps({"code": response.status_code, "body": response.get_json()}))
"""

REMOTE = {"REMOTE_ADDR": "203.0.113.9"}  # a client that is not on this machine


def details_with(**env) -> tuple[int, dict]:
    """Call /healthz/details in a fresh process whose settings point where ``env`` says."""
    result = subprocess.run([sys.executable, "-c", PROBE], env=dict(os.environ, **env),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout.strip().splitlines()[-1])
    return reply["code"], reply["body"]


def test_liveness_is_public_and_never_waits_for_workers(engine, celery_worker):
    client = create_app().test_client()
    started = time.monotonic()
    for _ in range(10):
        response = client.get("/healthz", environ_base=REMOTE)
        assert response.status_code == 200 and response.get_json() == {"status": "ok"}
    assert time.monotonic() - started < 2.0  # a worker broadcast alone takes 1 s


def test_details_need_a_read_token_or_a_local_client(tokens, celery_worker):
    client = create_app().test_client()
    assert client.get("/healthz/details", environ_base=REMOTE).status_code == 401
    assert client.get("/healthz/details", environ_base=REMOTE,
                      headers={"Authorization": f"Bearer {tokens['ingest']}"}).status_code == 403
    response = client.get("/healthz/details", environ_base=REMOTE,
                          headers={"Authorization": f"Bearer {tokens['read']}"})
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"
    assert body["database"] == {"ok": True} and body["broker"] == {"ok": True}
    for queue in ("realtime", "bulk", "training"):
        assert body["workers"][queue], queue
    assert client.get("/healthz/details").status_code == 200  # from this machine


def test_details_are_cached_so_repeated_calls_do_not_broadcast(engine, celery_worker):
    client = create_app().test_client()
    first = client.get("/healthz/details").get_json()
    started = time.monotonic()
    for _ in range(5):
        again = client.get("/healthz/details").get_json()
        assert again["checked_at"] == first["checked_at"]
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize("setting", ["SPAMSIFT_DATABASE_URL", "SPAMSIFT_BROKER_URL"])
def test_service_down_is_503(engine, setting):
    dead = {"SPAMSIFT_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/nothing",
            "SPAMSIFT_BROKER_URL": "redis://127.0.0.1:1/0"}[setting]
    code, body = details_with(**{setting: dead})
    assert code == 503
    assert body["status"] == "down"
    failed = "database" if "DATABASE" in setting else "broker"
    assert body[failed]["ok"] is False and body[failed]["error"]
    other = "broker" if failed == "database" else "database"
    assert body[other]["ok"] is True


def spamsift_health(*args: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli", "health", *args],
                          env=dict(os.environ, **env), capture_output=True, text=True,
                          timeout=60, cwd=REPO_ROOT)


def test_the_health_command_fails_with_a_service_down(engine):
    result = spamsift_health(SPAMSIFT_BROKER_URL="redis://127.0.0.1:1/0")
    assert result.returncode == 1 and result.stdout.startswith("broker: ")
    assert spamsift_health().returncode == 0


def test_the_health_command_sees_this_hosts_worker_and_beat(engine, broker, session_worker_paused,
                                                            tmp_path):
    """What the compose file's healthchecks run: a worker on this host for the queue, and
    beat writing its schedule."""
    env = {"SPAMSIFT_VAR_DIR": str(tmp_path / "var")}
    assert "no worker on this host consumes the training queue" in spamsift_health(
        "--worker", "training").stdout
    assert "beat has not written its schedule yet" in spamsift_health("--beat", **env).stdout
    worker = start_command(["-m", "cli", "worker", "-Q", "training", "-c", "1"],
                           tmp_path / "worker.log")
    beat = start_command(["-m", "cli", "beat"], tmp_path / "beat.log", VAR_DIR=tmp_path / "var")
    try:
        wait_for(lambda: spamsift_health("--worker", "training").returncode == 0, 90,
                 log_path=tmp_path / "worker.log")
        wait_for(lambda: spamsift_health("--beat", **env).returncode == 0, 60,
                 log_path=tmp_path / "beat.log")
    finally:
        stop_command(worker)
        stop_command(beat)
