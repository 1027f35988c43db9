"""Metrics are created once per process, however many threads ask first (gunicorn's
threads do, at the first requests after a start)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT

PROBE = """
import sys, threading
from core.metrics import metrics
barrier = threading.Barrier(16)
seen, errors = [], []
def first_use():
    barrier.wait()
    try:
        seen.append(id(metrics()))
    except Exception as exc:
        errors.append(repr(exc))
threads = [threading.Thread(target=first_use) for _ in range(16)]
for t in threads: t.start()
for t in threads: t.join()
print(len(set(seen)), errors)
"""


def test_threads_that_use_metrics_first_at_once_share_one_set(tmp_path):
    for _ in range(3):
        result = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO_ROOT, text=True,
                                capture_output=True, timeout=60,
                                env={"SPAMSIFT_METRICS_DIR": str(tmp_path / "metrics"),
                                     "PATH": "/usr/bin:/bin"})
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "1 []"
