"""Run several long-running commands as one: ``spamsift run`` and a ``spamsift worker`` per
queue."""

from __future__ import annotations

import signal
import subprocess
import time

import click


def run_together(commands: dict[str, list[str]], stop_timeout: float = 20,
                 env: dict[str, str] | None = None) -> int:
    """Start every command (with ``env``, else this process's environment); when one exits,
    or on SIGTERM or SIGINT, stop them all (SIGTERM, then SIGKILL after ``stop_timeout``
    seconds). Returns 1 if a command exited on its own."""
    processes = {name: subprocess.Popen(argv, env=env) for name, argv in commands.items()}
    stopping = False
    failed = False

    def stop(*_args) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while not stopping:
            for name, process in processes.items():
                if process.poll() is not None:
                    click.echo(f"{name} exited with {process.returncode}; stopping", err=True)
                    stopping = failed = True
            time.sleep(0.5)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.terminate()
        for process in processes.values():
            try:
                process.wait(timeout=stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
    return 1 if failed else 0
