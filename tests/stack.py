"""spamsift deployed in subprocesses over a database and broker the test chooses, for fault
and load tests: ``spamsift web`` (gunicorn), ``spamsift worker`` and ``spamsift beat`` are
started and killed as an operator's supervisor would, mail goes in over HTTP and the CLI, and
results are read back as database rows. Nothing here knows task names or modules, so the
tests hold whatever the pipeline's internals become."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests
from sqlalchemy.engine import Engine

from tests.conftest import REPO_ROOT
from tests.messages import write_labeled_mail
from tests.processes import kill_command, start_command, stop_command
from tests.rows import each_classified_once, email_count
from tests.servers import WebServer, spamsift_web
from tests.waiting import wait_for


@dataclass
class Stack:
    database_url: str
    broker_url: str
    directory: Path  # the processes' var dir and logs
    settings: dict[str, str] = field(default_factory=dict)  # SPAMSIFT_* without the prefix
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SPAMSIFT_DATABASE_URL": self.database_url,
                "SPAMSIFT_BROKER_URL": self.broker_url,
                "SPAMSIFT_VAR_DIR": str(self.directory / "var"),
                "PYTHONPATH": str(REPO_ROOT),
                **{f"SPAMSIFT_{name}": str(value) for name, value in self.settings.items()}}

    @property
    def engine(self) -> Engine:
        from core.db import get_engine

        return get_engine(self.database_url)

    def log(self, name: str) -> Path:
        return self.directory / f"{name}.log"

    def logs(self) -> str:
        """The end of every process's log, for assertion messages."""
        return "\n".join(f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
                         for path in sorted(self.directory.glob("*.log")))

    def start(self, name: str, *args: str) -> subprocess.Popen:
        """``spamsift ARGS`` as process ``name`` in a process group of its own."""
        self.processes[name] = start_command(["-m", "cli", *args], self.log(name), env=self.env)
        return self.processes[name]

    def stop(self, name: str) -> None:
        stop_command(self.processes.pop(name))

    def kill(self, name: str) -> None:
        kill_command(self.processes.pop(name))

    def stop_all(self) -> None:
        for name in list(self.processes):
            self.stop(name)

    def spamsift(self, *args: str, timeout: float = 180) -> str:
        """Run a ``spamsift`` command to its end; returns its output, fails on an error."""
        result = subprocess.run([sys.executable, "-m", "cli", *args], env=self.env,
                                cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, (f"spamsift {' '.join(args)}:\n{result.stdout}\n"
                                        f"{result.stderr}\n{self.logs()}")
        return result.stdout

    @contextmanager
    def web(self, *args: str) -> Iterator[WebServer]:
        with spamsift_web(*args, env=self.env) as server:
            yield server

    def api_token(self) -> str:
        """A token that may post mail (an admin's)."""
        from core.auth import create_api_token, create_user
        from core.db import session_scope
        from core.models import Role

        with session_scope(self.engine) as session:
            user = create_user(session, "mta", "a-long-password", Role.ADMIN)
            return create_api_token(session, user, "mta")

    def train_model(self, timeout: float = 120) -> int:
        """The hand-written labeled mail imported, a TF-IDF baseline trained on it and
        active, and that mail classified (needs workers on the bulk and training queues);
        returns how many emails that is."""
        labeled = self.directory / "labeled"
        count = write_labeled_mail(labeled)
        self.spamsift("import", str(labeled), "--label-from-path")
        self.spamsift("train", "baseline", "--wait", "--timeout", str(timeout))
        self.wait_until_each_classified_once(timeout, expected=count)
        return count

    def wait_until_each_classified_once(self, timeout: float, expected: int | None = None
                                        ) -> None:
        """Until every email is classified, once, by the active model (and there are
        ``expected`` emails, when given); fails with what is off and the logs."""
        last = ""

        def done() -> bool:
            nonlocal last
            ok, last = each_classified_once(self.engine)
            return ok and (expected is None or email_count(self.engine) == expected)

        try:
            wait_for(done, timeout, interval=0.5)
        except AssertionError:
            raise AssertionError(f"not every email classified once after {timeout} s: "
                                 f"{last}\n{self.logs()}") from None


@contextmanager
def deployment(directory: Path, database_url: str, broker_url: str, **settings
               ) -> Iterator[Stack]:
    """A stack whose processes are all stopped when the block ends."""
    directory.mkdir(parents=True, exist_ok=True)
    defaults = {"TORCH_THREADS": 1}  # two worker processes share two cores
    stack = Stack(database_url, broker_url, directory, {**defaults, **settings})
    try:
        yield stack
    finally:
        stack.stop_all()
        stack.engine.dispose()  # no connections left to a server the test may remove


# --- HTTP ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Posted:
    """One raw webhook post and its answer (``code`` 0: no answer, the connection failed)."""

    number: int
    code: int
    email_id: int | None
    started: float  # time.monotonic()
    ended: float


_sessions = threading.local()


def webhook_post(url: str, token: str, raw: bytes, timeout: float = 30) -> requests.Response:
    """POST one message to ``/webhooks/raw`` as an MTA would (a connection per thread)."""
    session = getattr(_sessions, "session", None)
    if session is None:
        session = _sessions.session = requests.Session()
    return session.post(f"{url}/webhooks/raw", data=raw, timeout=timeout,
                        headers={"Authorization": f"Bearer {token}",
                                 "Content-Type": "message/rfc822"})


def post_raw(url: str, token: str, raw: bytes, number: int = 0, timeout: float = 30
             ) -> Posted:
    """``webhook_post``, timed; a failed connection is answer 0."""
    started = time.monotonic()
    try:
        response = webhook_post(url, token, raw, timeout)
    except requests.RequestException:
        return Posted(number, 0, None, started, time.monotonic())
    email_id = response.json().get("id") if response.ok else None
    return Posted(number, response.status_code, email_id, started, time.monotonic())


def post_all(url: str, token: str, messages: Iterable[tuple[int, bytes]], concurrency: int
             ) -> list[Posted]:
    """Post every (number, message) with ``concurrency`` clients at once."""
    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(lambda item: post_raw(url, token, item[1], item[0]), messages))


class Burst:
    """Clients posting distinct messages one after another, in background threads, until
    ``stop()``: a burst that faults can be injected into while it runs."""

    def __init__(self, url: str, token: str, message, clients: int = 4) -> None:
        self.url, self.token, self.message = url, token, message  # message(number) -> bytes
        self.posted: list[Posted] = []
        self._lock = threading.Lock()
        self._next = 0
        self._stopping = threading.Event()
        self._threads = [threading.Thread(target=self._post_until_stopped, daemon=True)
                         for _ in range(clients)]
        for thread in self._threads:
            thread.start()

    def _post_until_stopped(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                number, self._next = self._next, self._next + 1
            posted = post_raw(self.url, self.token, self.message(number), number)
            with self._lock:
                self.posted.append(posted)

    def answered_since(self, moment: float) -> int:
        """How many posts sent at or after ``moment`` (time.monotonic()) were answered."""
        with self._lock:
            return sum(1 for p in self.posted if p.started >= moment)

    def stop(self) -> list[Posted]:
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=60)
        return sorted(self.posted, key=lambda p: p.number)
