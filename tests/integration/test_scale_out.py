"""Scale-out on one machine: two workers per queue, each with a node name of its own (as on
two hosts), sharing the broker and the database, split a bulk import between them and judge
every email exactly once."""

from __future__ import annotations

import re

from tests.conftest import TEST_BROKER_URL, TEST_DATABASE_URL
from tests.messages import generated_message
from tests.processes import json_lines
from tests.stack import deployment

IMPORTED = 240
BATCH = 20  # email ids per task: a dozen tasks to share
BATCH_DONE = re.compile(r"Task spamsift\.classify_emails\[[^\]]+\] succeeded in [\d.]+s: (\d+)")


def emails_judged_by(log: str) -> int:
    """The emails the classify_emails tasks in a worker's log took (their return value)."""
    return sum(int(match.group(1)) for line in json_lines(log)
               if (match := BATCH_DONE.match(str(line.get("event", "")))))


def test_two_workers_per_queue_share_a_bulk_import_without_duplicate_work(
        committed, broker, session_worker_paused, tmp_path):
    with deployment(tmp_path / "stack", TEST_DATABASE_URL, TEST_BROKER_URL,
                    ENQUEUE_BATCH_SIZE=BATCH) as stack:
        for host in ("host-a", "host-b"):
            for queue in ("realtime", "bulk", "training"):
                stack.start(f"{queue}-{host}", "worker", "-Q", queue, "-c", "1",
                            "--hostname", f"{queue}@{host}")
        labeled = stack.train_model(timeout=180)
        mail = tmp_path / "mail"
        mail.mkdir()
        for n in range(IMPORTED):
            (mail / f"{n}.eml").write_bytes(generated_message(5000 + n))
        stack.spamsift("import", str(mail))
        stack.wait_until_each_classified_once(300, expected=labeled + IMPORTED)
        judged = {host: emails_judged_by(stack.log(f"bulk-{host}").read_text())
                  for host in ("host-a", "host-b")}
    assert all(count > 0 for count in judged.values()), judged
    # Every email taken by one batch task, once: no task ran twice, none was lost.
    assert sum(judged.values()) == labeled + IMPORTED, judged
