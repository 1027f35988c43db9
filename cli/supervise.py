"""Run several long-running commands as one: ``spamsift run`` and ``spamsift worker``.

A command that crashes (a non-zero exit: a Celery worker that died on a broker outage, the
out-of-memory killer) is started again after a pause that doubles with each crash in a row,
so mail keeps flowing without an operator. One that keeps crashing at start (a wrong
setting, a port in use) stops everything instead, with its exit status.
"""

from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import dataclass

import click

# A crash this soon after a start counts towards a crash loop; this many in a row stop all.
QUICK_CRASH_SECONDS = 30.0
QUICK_CRASHES_TO_GIVE_UP = 5
FIRST_PAUSE_SECONDS = 1.0
LONGEST_PAUSE_SECONDS = 60.0


@dataclass
class _Running:
    argv: list[str]
    process: subprocess.Popen | None = None
    started: float = 0.0
    quick_crashes: int = 0
    restart_at: float | None = None  # when a crashed command is due to start again


def run_together(commands: dict[str, list[str]], stop_timeout: float = 20,
                 env: dict[str, str] | None = None,
                 first_pause: float = FIRST_PAUSE_SECONDS) -> int:
    """Start every command (with ``env``, else this process's environment) and restart any
    that crashes; on SIGTERM or SIGINT, when one exits cleanly, or when one crashes at start
    ``QUICK_CRASHES_TO_GIVE_UP`` times in a row, stop them all (SIGTERM, then SIGKILL after
    ``stop_timeout`` seconds). Returns 1 if a command ended the run on its own."""
    running = {name: _Running(argv) for name, argv in commands.items()}

    def start(entry: _Running) -> None:
        entry.process = subprocess.Popen(entry.argv, env=env)
        entry.started, entry.restart_at = time.monotonic(), None

    for entry in running.values():
        start(entry)
    stopping = False
    failed = False

    def stop(*_args) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while not stopping:
            now = time.monotonic()
            for name, entry in running.items():
                if entry.restart_at is not None:
                    if now >= entry.restart_at:
                        click.echo(f"{name}: starting again", err=True)
                        start(entry)
                    continue
                code = entry.process.poll()
                if code is None or stopping:
                    continue
                if code == 0:
                    click.echo(f"{name} exited; stopping", err=True)
                    stopping = failed = True
                    break
                quick = now - entry.started < QUICK_CRASH_SECONDS
                entry.quick_crashes = entry.quick_crashes + 1 if quick else 0
                if entry.quick_crashes >= QUICK_CRASHES_TO_GIVE_UP:
                    click.echo(f"{name} exited with {code} {entry.quick_crashes} times in a "
                               "row right after starting; stopping", err=True)
                    stopping = failed = True
                    break
                pause = min(first_pause * 2 ** entry.quick_crashes, LONGEST_PAUSE_SECONDS)
                click.echo(f"{name} exited with {code}; starting it again in {pause:.0f} s",
                           err=True)
                entry.restart_at = now + pause
            time.sleep(0.5)
    finally:
        live = [e.process for e in running.values()
                if e.restart_at is None and e.process.poll() is None]
        for process in live:
            process.terminate()
        for process in live:
            try:
                process.wait(timeout=stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
    return 1 if failed else 0
