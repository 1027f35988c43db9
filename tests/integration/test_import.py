"""``spamsift import`` on real services: stored, deduplicated, parsed by a real worker."""

from __future__ import annotations

import io
import shutil
import tarfile

from click.testing import CliRunner
from sqlalchemy import func, select, text

from cli.main import cli
from core.db import session_scope
from core.models import Email, EmailStatus, Job, JobState, Label
from tests.conftest import FIXTURES
from tests.rows import processed_emails
from tests.waiting import wait_for


def make_mailbox(tmp_path):
    """A folder with ham and spam in three container formats, and one unreadable file."""
    root = tmp_path / "mail"
    (root / "ham").mkdir(parents=True)
    for name in ("plain.eml", "rfc2047_headers.eml", "nested_rfc822.eml"):
        shutil.copy(FIXTURES / "mail" / name, root / "ham" / name)
    with tarfile.open(root / "spam.tar.gz", "w:gz") as archive:
        for name in ("html_only.eml", "broken_boundary.eml"):
            data = (FIXTURES / "mail" / name).read_bytes()
            info = tarfile.TarInfo(f"spam/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    (root / "ham" / "notes.txt").write_bytes(b"just some notes, not mail\n")
    (root / "broken.tar.gz").write_bytes(b"\x1f\x8bnot an archive")
    return root


def test_import_stores_labels_dedupes_and_parses(committed, celery_worker, tmp_path):
    root = make_mailbox(tmp_path)
    runner = CliRunner()
    result = runner.invoke(cli, ["import", str(root), "--label-from-path", "--source", "t"])
    assert result.exit_code == 0, result.output
    assert "imported 5 (ham 3, spam 2), duplicates 0, failed 1" in result.output
    assert "skipped 1 non-mail files" in result.output
    assert "broken.tar.gz: unreadable" in result.output

    emails = wait_for(lambda: processed_emails(5), timeout=60)
    by_subject = {e.subject: e for e in emails}
    assert by_subject["Your exclusive offer"].label == Label.SPAM
    assert by_subject["Lunch on Friday?"].label == Label.HAM
    assert by_subject["Lunch on Friday?"].sender == "alice@example.org"
    assert "Cheap watches here." in by_subject["Boundary never appears"].text
    assert by_subject["Boundary never appears"].defects
    assert {e.source for e in emails} == {"t"}

    with session_scope() as session:
        jobs = {job.kind: job for job in session.scalars(select(Job))}
        assert jobs["import"].state == JobState.SUCCEEDED and jobs["import"].done == 7
        assert jobs["import"].result["imported"] == 5
        wait_for(lambda: session.refresh(jobs["ingest"]) or jobs["ingest"].done == 5)
        assert jobs["ingest"].state == JobState.SUCCEEDED
        chunks = session.execute(text("SELECT count(DISTINCT email_id), min(dim) FROM chunks"))
        assert tuple(chunks.one()) == (5, 384)

    again = runner.invoke(cli, ["import", str(root), "--label-from-path"])
    assert again.exit_code == 0, again.output
    assert "imported 0, duplicates 5, failed 1" in again.output
    assert "nothing new" in again.output


def test_explicit_label_and_conflicting_options(committed, tmp_path):
    root = make_mailbox(tmp_path)
    runner = CliRunner()
    both = runner.invoke(cli, ["import", str(root), "--label", "spam", "--label-from-path"])
    assert both.exit_code != 0 and "not both" in both.output
    bad = runner.invoke(cli, ["import", str(root), "--label", "eggs"])
    assert bad.exit_code == 2 and "eggs" in bad.output
    result = runner.invoke(cli, ["import", str(root / "ham"), "--label", "spam"])
    assert result.exit_code == 0, result.output
    with session_scope() as session:
        labels = session.scalars(select(Email.label)).all()
    assert labels == [Label.SPAM] * 3


def test_broker_down_still_stores_then_reconciler_recovers(committed, celery_worker, tmp_path):
    """A real dead broker address: rows are kept and reported, and once a broker is back the
    reconciler sends them to a worker."""
    import os
    import subprocess
    import sys

    from workers.client import send
    from workers.names import RECONCILE

    root = make_mailbox(tmp_path)
    env = dict(os.environ, SPAMSIFT_BROKER_URL="redis://127.0.0.1:1/0")
    result = subprocess.run([sys.executable, "-m", "cli", "import", str(root / "ham")],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "imported 3" in result.stdout
    assert "the broker is down; 3 emails are stored" in result.stderr
    with session_scope() as session:
        statuses = session.scalars(select(Email.status)).all()
    assert statuses == [EmailStatus.RECEIVED] * 3

    send(RECONCILE, kwargs={"older_than_seconds": 0})

    wait_for(lambda: processed_emails(3), timeout=60)


def test_an_archive_over_the_unpack_limit_stops_and_keeps_what_came_before(
        committed, settings, tmp_path):
    settings(MAX_ARCHIVE_BYTES=64 * 1024)
    members = [("spam/1.eml", FIXTURES / "mail" / "plain.eml"),
               ("spam/2.eml", FIXTURES / "mail" / "html_only.eml"),
               ("spam/bomb", None), ("spam/3.eml", FIXTURES / "mail" / "rfc2047_headers.eml")]
    archive = tmp_path / "spam.tar.bz2"
    with tarfile.open(archive, "w:bz2") as packed:
        for name, source in members:
            data = source.read_bytes() if source else b"a" * (1024 * 1024)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            packed.addfile(info, io.BytesIO(data))
    assert archive.stat().st_size < 10_000

    result = CliRunner().invoke(cli, ["import", str(archive), "--label-from-path"])
    assert result.exit_code == 0, result.output
    assert "imported 2 (spam 2), duplicates 0, failed 1" in result.output
    assert "failed (1): archive over the unpacked size limit" in result.output
    with session_scope() as session:
        assert session.scalar(select(func.count(Email.id))) == 2
        job = session.scalars(select(Job).where(Job.kind == "import")).one()
        assert job.state == JobState.SUCCEEDED
        assert job.result["failed"] == 1 and job.result["imported"] == 2
