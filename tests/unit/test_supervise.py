"""The supervisor behind `spamsift run` and `spamsift worker`, with real processes: a crashed
command is started again, a crash loop at start stops everything, a signal stops all."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.waiting import wait_for


def supervise(tmp_path: Path, commands: dict[str, str]) -> subprocess.Popen:
    """``run_together`` over Python snippets, in a process of its own (it takes signals)."""
    argv = {name: [sys.executable, "-c", textwrap.dedent(code)] for name, code in commands.items()}
    script = ("import sys; from cli.supervise import run_together; "
              f"sys.exit(run_together({argv!r}, stop_timeout=5, first_pause=0.2))")
    return subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).parents[2],
                            stderr=open(tmp_path / "supervisor.log", "wb"))


def test_a_crashed_command_is_started_again_and_a_signal_stops_all(tmp_path):
    starts = tmp_path / "starts"
    # Crashes on its first run, then stays up.
    crasher = f"""
        import pathlib, sys, time
        starts = pathlib.Path({str(starts)!r})
        starts.write_text(starts.read_text() + "x" if starts.exists() else "x")
        if len(starts.read_text()) == 1:
            sys.exit(3)
        time.sleep(600)
    """
    steady = "import time; time.sleep(600)"
    process = supervise(tmp_path, {"crasher": crasher, "steady": steady})
    try:
        wait_for(lambda: starts.exists() and starts.read_text() == "xx", 30)
        time.sleep(1)
        assert process.poll() is None  # the other command was not stopped
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        process.kill()
    log = (tmp_path / "supervisor.log").read_text()
    assert "crasher exited with 3; starting it again" in log


def test_a_command_that_keeps_crashing_at_start_stops_everything(tmp_path):
    process = supervise(tmp_path, {"broken": "import sys; sys.exit(2)",
                                   "steady": "import time; time.sleep(600)"})
    try:
        assert process.wait(timeout=60) == 1
    finally:
        process.kill()
    log = (tmp_path / "supervisor.log").read_text()
    assert "broken exited with 2 5 times in a row right after starting; stopping" in log
