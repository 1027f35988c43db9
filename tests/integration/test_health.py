"""GET /healthz against real services, and with each of them really unreachable."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from web import create_app

PROBE = """
import json
from web import create_app
response = create_app().test_client().get("/healthz")
print(json.dumps({"code": response.status_code, "body": response.get_json()}))
"""


def healthz_with(**env) -> tuple[int, dict]:
    """Call /healthz in a fresh process whose settings point where ``env`` says."""
    result = subprocess.run([sys.executable, "-c", PROBE], env=dict(os.environ, **env),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout.strip().splitlines()[-1])
    return reply["code"], reply["body"]


def test_healthy_with_a_worker_on_every_queue(engine, celery_worker):
    response = create_app().test_client().get("/healthz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"
    assert body["database"] == {"ok": True} and body["broker"] == {"ok": True}
    for queue in ("realtime", "bulk", "training"):
        assert body["workers"][queue], queue


@pytest.mark.parametrize("setting", ["SPAMSIFT_DATABASE_URL", "SPAMSIFT_BROKER_URL"])
def test_service_down_is_503(engine, setting):
    dead = {"SPAMSIFT_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/nothing",
            "SPAMSIFT_BROKER_URL": "redis://127.0.0.1:1/0"}[setting]
    code, body = healthz_with(**{setting: dead})
    assert code == 503
    assert body["status"] == "down"
    failed = "database" if "DATABASE" in setting else "broker"
    assert body[failed]["ok"] is False and body[failed]["error"]
    other = "broker" if failed == "database" else "database"
    assert body[other]["ok"] is True
