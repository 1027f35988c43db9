"""``spamsift web`` (gunicorn) in a subprocess on a free port, for tests that need the real
server: its worker class, timeouts and access log."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import requests


@dataclass
class WebServer:
    url: str
    process: subprocess.Popen
    output: str = field(default="")  # what the server printed (access log), after it stopped


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def spamsift_web(*args: str, env: dict | None = None) -> Iterator[WebServer]:
    """Serve the app with ``spamsift web`` until the block ends; waits until it answers."""
    port = free_port()
    # Output to a file, not a pipe: thousands of access log lines would fill a pipe nobody
    # reads until the end, and the server would block writing to it.
    log = tempfile.TemporaryFile()
    process = subprocess.Popen([sys.executable, "-m", "cli", "web", "--port", str(port), *args],
                               stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, **(env or {})})
    server = WebServer(f"http://127.0.0.1:{port}", process)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(server.url + "/login", timeout=5)
                break
            except requests.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("spamsift web did not start")
                time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.seek(0)
        server.output = log.read().decode(errors="replace")
        log.close()
