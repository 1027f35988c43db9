"""Long-running commands (workers, beat, web) in process groups of their own, as an
operator's supervisor runs them: started with added settings, stopped, or killed outright."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT
from tests.waiting import wait_for


def start_command(argv: list[str], log_path: Path, pythonpath: tuple = (),
                  env: dict | None = None, **settings) -> subprocess.Popen:
    """``python argv`` in its own process group (``env``, else this process's environment,
    with ``SPAMSIFT_*`` settings added), its output in ``log_path``."""
    base = os.environ if env is None else env
    env = {**base, "PYTHONPATH": os.pathsep.join(map(str, (*pythonpath, REPO_ROOT))),
           **{f"SPAMSIFT_{name}": str(value) for name, value in settings.items()}}
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, *argv], cwd=REPO_ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


def group_alive(process: subprocess.Popen) -> bool:
    try:
        os.killpg(process.pid, 0)
        return True
    except ProcessLookupError:
        return False


def stop_command(process: subprocess.Popen) -> None:
    """Stop a command and everything it started (SIGTERM, then SIGKILL after 30 s)."""
    if group_alive(process):
        os.killpg(process.pid, signal.SIGTERM)
        try:
            wait_for(lambda: process.poll() is not None and not group_alive(process), 30)
        except AssertionError:
            os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def kill_command(process: subprocess.Popen) -> None:
    """SIGKILL to the whole group at once (the out-of-memory killer, a pulled plug): nothing
    in it gets to clean up, acknowledge or roll back."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    wait_for(lambda: not group_alive(process), 10)


def json_lines(output: str) -> list[dict]:
    """The JSON log lines in a process's output (``core.logs``); other lines are skipped."""
    lines = []
    for line in output.splitlines():
        try:
            parsed = json.loads(line)
        except ValueError:
            continue
        if isinstance(parsed, dict):
            lines.append(parsed)
    return lines
