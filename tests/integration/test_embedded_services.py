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
