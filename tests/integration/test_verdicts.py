"""Every accepted email ends with exactly one verdict from the active model, whatever order
things happened in: mail parsed before any model, lost broker messages, redelivered tasks,
uploads made while the broker was down, and verdict callbacks for mail the reconciler
recovered. Real PostgreSQL, Redis, Celery worker and HTTP receiver."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import uuid
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select, text

from cli.main import cli
from core.db import session_scope
from core.intake import Incoming, store_emails
from core.models import Email, EmailStatus, Job, JobState, Label, Prediction
from tests.conftest import FIXTURES, scratch_database
from tests.integration.test_classification import labeled_mail  # noqa: F401
from tests.messages import LABELED, as_eml
from tests.rows import statuses, verdicts_by_email
from tests.waiting import wait_for
from workers.client import send
from workers.names import CLASSIFY_EMAIL, CLASSIFY_EMAILS, IMPORT_UPLOAD, RECONCILE

DEAD_BROKER = "redis://127.0.0.1:1/0"


def invoke(*args: str):
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result


def all_classified_once_by(model_id: int):
    def check():
        return statuses() == {EmailStatus.CLASSIFIED} and all(
            models == [model_id] for models in verdicts_by_email().values())
    return check


def store(*items: tuple[bytes, str]) -> list[int]:
    """Store messages the way intake does when the broker is down: committed, not enqueued."""
    with session_scope() as session:
        return [s.email_id for s in store_emails(
            session, [Incoming(raw=raw, source=source) for raw, source in items])]


def store_labeled() -> None:
    with session_scope() as session:
        for line in LABELED.read_text().splitlines():
            record = json.loads(line)
            store_emails(session, [Incoming(as_eml(record["subject"], record["text"]), "test",
                                            Label(record["label"]), "import")])


def drain(probe_done) -> None:
    """Wait until a probe, sent after the work under test through the same queue, is done:
    the queue is FIFO and the test worker runs one task at a time, so that work has run."""
    wait_for(probe_done, timeout=60)


def drain_bulk() -> None:
    """Wait until the worker has run everything sent to the bulk queue so far."""
    [probe] = store((as_eml(f"bulk probe {uuid.uuid4()}", "a probe message"), "import"))
    send(CLASSIFY_EMAILS, [[probe]])

    def parsed():
        with session_scope() as session:
            return session.get(Email, probe).status != EmailStatus.RECEIVED

    drain(parsed)


# Mail parsed while no model was active (the first `make run`).

def test_mail_parsed_before_the_first_model_is_classified_when_training_activates_it(
        labeled_mail):
    assert statuses() == {EmailStatus.PARSED}
    invoke("train", "baseline", "--wait", "--timeout", "120")
    wait_for(all_classified_once_by(1), timeout=60)


def test_activating_a_model_classifies_the_mail_that_waited(labeled_mail):
    invoke("train", "baseline", "--no-activate", "--wait", "--timeout", "120")
    assert statuses() == {EmailStatus.PARSED}  # no model is active yet
    invoke("models", "activate", "1")
    wait_for(all_classified_once_by(1), timeout=60)


def test_reconciler_classifies_waiting_mail_once_a_model_is_active(labeled_mail):
    """Activation's own message can be lost (broker down): the reconciler catches up."""
    from core.registry import activate

    invoke("train", "baseline", "--no-activate", "--wait", "--timeout", "120")
    with session_scope() as session:
        activate(session, 1)  # the registry alone enqueues nothing
    assert statuses() == {EmailStatus.PARSED}
    send(RECONCILE, kwargs={"older_than_seconds": 0})
    wait_for(all_classified_once_by(1), timeout=60)


def verdict_models() -> dict[int, int]:
    """Each email's verdict, as the id of the model that made it."""
    with session_scope() as session:
        return dict(session.execute(select(Email.id, Prediction.model_id)
                                    .join(Prediction, Prediction.id == Email.verdict_id)).all())


def test_activation_rescores_in_the_background_and_roll_back_judges_nothing_twice(
        labeled_mail):
    invoke("train", "baseline", "--wait", "--timeout", "120")
    wait_for(all_classified_once_by(1), timeout=60)
    invoke("train", "baseline", "--algorithm", "lr", "--wait", "--timeout", "120")
    wait_for(lambda: set(verdict_models().values()) == {2}, timeout=60)
    with session_scope() as session:
        [first, second] = session.scalars(select(Job).where(Job.kind == "rescore")
                                          .order_by(Job.id)).all()
    assert first.state == second.state == JobState.SUCCEEDED
    assert second.total == second.done == 40 and second.finished_at >= second.started_at
    assert all(models == [1, 2] for models in verdicts_by_email().values())

    invoke("models", "rollback")  # model 1 judged all of them already
    wait_for(lambda: set(verdict_models().values()) == {1}, timeout=60)
    assert all(models == [1, 2] for models in verdicts_by_email().values())
    assert statuses() == {EmailStatus.CLASSIFIED}


# Mail that never moves: re-sent with backoff, then given up (failed, with a reason).

def test_reconciler_backs_off_then_gives_up_with_a_reason(committed, settings):
    from workers.maintenance import reconcile

    settings(RECONCILE_MAX_RESENDS=3)
    fresh, once, twice, worn = store(*[(as_eml(f"stuck {i}", "body"), "webhook:raw")
                                       for i in range(4)])
    with session_scope() as session:
        # Re-sent before: ``resends`` times, the last one this many grace periods ago.
        for email_id, resends, ago in ((fresh, 0, 1.5), (once, 1, 1.5), (twice, 2, 4.5),
                                       (worn, 3, 100)):
            session.execute(text(
                "UPDATE emails SET resends = :resends,"
                " updated_at = now() - make_interval(secs => :ago * 100) WHERE id = :id"),
                {"resends": resends, "ago": ago, "id": email_id})
    assert reconcile(older_than_seconds=100) == 2  # fresh and twice; once waits 2 periods
    with session_scope() as session:
        rows = {e.id: e for e in session.scalars(select(Email))}
        assert rows[fresh].resends == 1 and rows[twice].resends == 3
        assert rows[once].resends == 1 and rows[once].status == EmailStatus.RECEIVED
        assert rows[worn].status == EmailStatus.FAILED
        assert "3 re-sends" in rows[worn].status_message
        assert "unparsed" in rows[worn].status_message
        given_up = (rows[worn].resends, rows[worn].updated_at)
        session.execute(text("UPDATE emails SET updated_at = now() - interval '1 day'"
                             " WHERE status <> 'failed'"))
    reconcile(older_than_seconds=100)
    with session_scope() as session:  # failed mail is never sent again
        worn_row = session.get(Email, worn)
        assert (worn_row.resends, worn_row.updated_at) == given_up
        assert worn_row.status == EmailStatus.FAILED


# Uploads made while the broker was down.

UPLOAD_PROBE = """
import io, json, sys
from web import create_app
app = create_app()
client = app.test_client()
client.set_cookie(sys.argv[1], sys.argv[2])
response = client.post("/import", data={"csrf_token": sys.argv[3], "label": "spam",
                                        "file": (io.BytesIO(sys.stdin.buffer.read()),
                                                 sys.argv[4])})
print(json.dumps({"code": response.status_code, "location": response.headers.get("Location")}))
"""


def upload_with_broker_down(app, archive: bytes, filename: str) -> int:
    """Log in here, then post the upload from a process whose broker is unreachable."""
    from tests.integration.conftest import csrf_token, login

    client = app.test_client()
    login(client, "alice", "correct horse")
    token = csrf_token(client, "/import")
    name = app.config["SESSION_COOKIE_NAME"]
    cookie = client.get_cookie(name)
    result = subprocess.run([sys.executable, "-c", UPLOAD_PROBE, name, cookie.value, token,
                             filename], input=archive,
                            env=dict(os.environ, SPAMSIFT_BROKER_URL=DEAD_BROKER),
                            capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr.decode()
    reply = json.loads(result.stdout.decode().strip().splitlines()[-1])
    assert reply["code"] == 302, reply
    return int(reply["location"].rsplit("/", 1)[1])


def zipped(*names: str) -> bytes:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        for name in names:
            bundle.writestr(f"mail/{name}", (FIXTURES / "mail" / name).read_bytes())
    return archive.getvalue()


def job_row(job_id: int) -> Job:
    with session_scope() as session:
        return session.get(Job, job_id)


def test_upload_made_while_the_broker_was_down_is_imported_by_the_reconciler(
        committed, celery_worker):
    from core.auth import create_user
    from core.config import get_settings
    from core.models import Role
    from web import create_app

    with session_scope() as session:
        create_user(session, "alice", "correct horse", Role.ADMIN)
    app = create_app()
    kept = upload_with_broker_down(app, zipped("plain.eml", "html_only.eml"), "kept.zip")
    lost = upload_with_broker_down(app, zipped("attachments.eml"), "lost.zip")
    assert job_row(kept).state == job_row(lost).state == JobState.QUEUED
    uploads = get_settings().var_dir / "uploads"
    [kept_file] = uploads.glob("*/kept.zip")
    [lost_file] = uploads.glob("*/lost.zip")
    lost_file.unlink()  # e.g. var/ was cleaned meanwhile

    send(RECONCILE, kwargs={"older_than_seconds": 0})
    wait_for(lambda: job_row(kept).state == JobState.SUCCEEDED, timeout=60)
    assert job_row(kept).result["imported"] == 2
    failed = wait_for(lambda: job_row(lost).state == JobState.FAILED and job_row(lost))
    assert "file is gone" in failed.message
    assert not kept_file.parent.exists() and not lost_file.parent.exists()
    with session_scope() as session:
        assert session.scalars(select(Email.label)).all() == [Label.SPAM, Label.SPAM]

    # A second delivery of the same upload (a re-send that raced the first) changes nothing.
    send(IMPORT_UPLOAD, [kept, str(kept_file)], {"label": "spam"})
    drain_bulk()
    again = job_row(kept)
    assert again.state == JobState.SUCCEEDED and again.result["imported"] == 2
    assert again.result["failed"] == 0


# One prediction per (email, model), and one callback per verdict of realtime mail.

@pytest.fixture
def callbacks(settings):
    """A local receiver that answers 200 and keeps every verdict posted to it."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings(CALLBACK_URL=f"http://127.0.0.1:{server.server_port}/verdicts",
             CALLBACK_SECRET="verdicts-test-secret-of-32-bytes!", CALLBACK_RETRY_SECONDS=0.2)
    yield received
    server.shutdown()


def callback_counts(received: list[dict]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for payload in received:
        counts[payload["email_id"]] = counts.get(payload["email_id"], 0) + 1
    return counts


def classify_probe(received: list[dict], subject: str):
    """Send a new message through ``spamsift classify`` (realtime queue) and return a
    check that holds once its callback came: everything sent before it has run."""
    result = CliRunner().invoke(cli, ["classify", "-", "--json"],
                                input=as_eml(subject, "a probe message"))
    assert result.exit_code == 0, result.output
    email_id = json.loads(result.stdout)["email_id"]
    return lambda: email_id in callback_counts(received)


def test_redelivered_work_makes_no_second_prediction_or_callback(committed, celery_worker,
                                                                   callbacks):
    store_labeled()
    invoke("train", "baseline", "--wait", "--timeout", "120")
    plain = str(FIXTURES / "mail" / "plain.eml")
    first = json.loads(invoke("classify", plain, "--json").stdout)
    again = json.loads(invoke("classify", plain, "--json").stdout)  # the same bytes again
    assert again["email_id"] == first["email_id"]
    email_id = first["email_id"]
    send(CLASSIFY_EMAIL, [email_id])  # a redelivered realtime task
    send(CLASSIFY_EMAILS, [[email_id]])  # and a redelivered bulk batch
    drain_bulk()
    drain(classify_probe(callbacks, "probe one"))  # any callback sent meanwhile has come
    with session_scope() as session:
        count = session.scalar(select(func.count()).select_from(Prediction)
                               .where(Prediction.email_id == email_id))
    assert count == 1
    assert callback_counts(callbacks)[email_id] == 1


def test_mail_recovered_by_the_reconciler_gets_one_callback_and_imports_none(
        committed, celery_worker, callbacks):
    store_labeled()
    invoke("train", "baseline", "--wait", "--timeout", "120")
    # Accepted while the broker was down: stored and committed, never enqueued.
    hook, api, imported = store((as_eml("Lunch on Friday?", "at noon"), "webhook:raw"),
                                (as_eml("Claim your prize", "send your bank details"), "api"),
                                (as_eml("Old newsletter", "an archived issue"), "import"))
    send(RECONCILE, kwargs={"older_than_seconds": 0})
    wait_for(lambda: callback_counts(callbacks).keys() >= {hook, api}, timeout=60)
    send(RECONCILE, kwargs={"older_than_seconds": 0})  # nothing left to recover
    send(CLASSIFY_EMAILS, [[hook, api, imported]])  # a redelivered batch
    drain_bulk()
    drain(classify_probe(callbacks, "probe two"))
    counts = callback_counts(callbacks)
    assert counts[hook] == counts[api] == 1
    assert imported not in counts  # bulk-imported mail gets no callback
    verdicts = verdicts_by_email()
    assert verdicts[hook] == verdicts[api] == verdicts[imported] == [1]
    by_email = {payload["email_id"]: payload for payload in callbacks}
    assert by_email[hook]["source"] == "webhook:raw" and by_email[api]["source"] == "api"


# The migration that makes predictions unique keeps the newest of any duplicates.

def test_unique_predictions_migration_keeps_the_newest_duplicate():
    from alembic.script import ScriptDirectory
    from sqlalchemy.exc import IntegrityError

    from core import migrate

    before = ScriptDirectory.from_config(migrate.alembic_config()).get_revision("0003")
    with scratch_database("spamsift_test_dedupe") as (url, engine):
        migrate.upgrade(url, before.down_revision)
        with engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO emails (id, raw, sha256, size, source, status)"
                " VALUES (1, 'x', '\\x01', 1, 'api', 'classified')"))
            connection.execute(text(
                "INSERT INTO models (id, kind, params, metrics, curves, confusion, thresholds,"
                " train_size, artifact) VALUES (1, 'tfidf-nb', '{}', '{}', '{}', '{}', '{}',"
                " 0, '{}'), (2, 'tfidf-nb', '{}', '{}', '{}', '{}', '{}', 0, '{}')"))
            connection.execute(text(
                "INSERT INTO predictions (id, email_id, model_id, p_spam, verdict, thresholds,"
                " evidence, latency_ms) VALUES (1, 1, 1, 0.1, 'ham', '{}', '{}', 1),"
                " (2, 1, 1, 0.9, 'spam', '{}', '{}', 1), (3, 1, 2, 0.5, 'unsure', '{}', '{}', 1)"))
        migrate.upgrade(url)
        with engine.begin() as connection:
            kept = connection.execute(text(
                "SELECT id, model_id, verdict FROM predictions ORDER BY id")).all()
        assert [tuple(row) for row in kept] == [(2, 1, "spam"), (3, 2, "unsure")]
        with pytest.raises(IntegrityError), engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO predictions (email_id, model_id, p_spam, verdict, thresholds,"
                " evidence, latency_ms) VALUES (1, 2, 0.5, 'unsure', '{}', '{}', 1)"))
        migrate.downgrade(url, before.down_revision)



def test_verdict_pointer_migration_points_at_the_newest_and_drops_embedded():
    from core import migrate

    with scratch_database("spamsift_test_pointer") as (url, engine):
        migrate.upgrade(url, "0005")
        with engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO emails (id, raw, sha256, size, source, status) VALUES"
                " (1, 'x', '\\x01', 1, 'api', 'classified'), (2, 'y', '\\x02', 1, 'api',"
                " 'embedded'), (3, 'z', '\\x03', 1, 'api', 'received')"))
            connection.execute(text(
                "INSERT INTO models (id, kind, params, metrics, curves, confusion, thresholds,"
                " train_size, artifact) VALUES (1, 'tfidf-nb', '{}', '{}', '{}', '{}', '{}',"
                " 0, '{}'), (2, 'tfidf-nb', '{}', '{}', '{}', '{}', '{}', 0, '{}')"))
            connection.execute(text(
                "INSERT INTO predictions (id, email_id, model_id, p_spam, verdict, thresholds,"
                " evidence, latency_ms) VALUES (1, 1, 1, 0.1, 'ham', '{}', '{}', 1),"
                " (2, 1, 2, 0.9, 'spam', '{}', '{}', 1)"))
            connection.execute(text(
                "INSERT INTO chunks (email_id, encoder, ordinal, text, char_start, char_end,"
                " dim, embedding) VALUES (2, 'enc;pool=cls', 0, 'y', 0, 1, 3, '[1,0,0]')"))
        migrate.upgrade(url)
        with engine.begin() as connection:
            rows = connection.execute(text(
                "SELECT id, status::text, verdict_id, indexed_with FROM emails ORDER BY id"))
            assert [tuple(row) for row in rows] == [(1, "classified", 2, None),
                                                    (2, "parsed", None, "enc;pool=cls"),
                                                    (3, "received", None, None)]
        migrate.downgrade(url, "0005")
        with engine.begin() as connection:
            statuses = connection.execute(text("SELECT status::text FROM emails ORDER BY id"))
            assert [row[0] for row in statuses] == ["classified", "embedded", "received"]
