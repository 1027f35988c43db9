"""Fixtures the integration tests share: the app's test client on committed rows, an API
token that may post mail (an admin's, so it carries every scope), the suite's worker
paused, and labeled mail with a model trained on it beside a holdout set."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from tests.messages import generated_message
from tests.rows import processed_emails
from tests.waiting import wait_for


@pytest.fixture
def client(committed, broker):
    from web import create_app

    return create_app().test_client()


@pytest.fixture
def api_token(committed):
    from core.auth import create_api_token, create_user
    from core.db import session_scope
    from core.models import Role

    with session_scope() as session:
        user = create_user(session, "mta", "a-long-password", Role.ADMIN)
        return create_api_token(session, user, "postfix")


@pytest.fixture
def session_worker_paused(celery_worker):
    """The suite's in-process worker stops consuming, so only the workers under test work."""
    from workers.app import celery_app
    from workers.names import QUEUES

    destination = [celery_worker.hostname]
    for queue in QUEUES:
        assert celery_app.control.cancel_consumer(queue, destination=destination, reply=True,
                                                  timeout=5)
    yield celery_worker.hostname
    for queue in QUEUES:
        celery_app.control.add_consumer(queue, destination=destination, reply=True, timeout=5)


# 60 labeled emails (30 a class): a holdout set of 7 a class, 23 a class to train on.
LABELED = 60
HOLDOUT = {"HOLDOUT_SHARE": 0.25, "HOLDOUT_MIN_PER_CLASS": 5}


def invoke(*args: str):
    """``spamsift ARGS`` in this process; fails the test on an error."""
    from cli.main import cli

    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def trained(committed, celery_worker, settings, tmp_path) -> int:
    """Generated mail, labeled, imported and judged by a TF-IDF NB model trained on it;
    returns that model's id."""
    from core.db import session_scope
    from core.models import JobState
    from workers.client import queue_training

    settings(**HOLDOUT, RETRAIN_MIN_LABELS=10)
    for n in range(LABELED):
        folder = tmp_path / "mail" / ("spam" if n % 2 == 0 else "ham")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{n}.eml").write_bytes(generated_message(n))
    invoke("import", str(tmp_path / "mail"), "--label-from-path")
    with session_scope() as session:
        job_id = queue_training(session, "tfidf-nb").id
    job = wait_for(lambda: finished(job_id), timeout=120)
    assert job.state == JobState.SUCCEEDED, job.message
    wait_for(lambda: processed_emails(LABELED), timeout=120)
    return job.result["model_id"]


def finished(job_id: int):
    """The job once it has ended, else None."""
    from core.db import session_scope
    from core.models import Job, JobState

    with session_scope() as session:
        job = session.get(Job, job_id)
        return job if job.state not in (JobState.QUEUED, JobState.RUNNING) else None


def csrf_token(client, path: str = "/login", **kwargs) -> str:
    """The CSRF token of the form on ``path``."""
    import re

    page = client.get(path, **kwargs).get_data(as_text=True)
    return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)[1]


def login(client, username: str, password: str, address: str | None = None):
    """Log ``client`` in to the dashboard through the login form (from ``address``, as a
    trusted proxy would say, when given)."""
    headers = {"X-Forwarded-For": address} if address else {}
    token = csrf_token(client, headers=headers)
    return client.post("/login", data={"username": username, "password": password,
                                       "csrf_token": token}, headers=headers)


@pytest.fixture
def tokens(committed):
    """An admin's API tokens, one per scope: {"read": …, "ingest": …}."""
    from core.auth import create_api_token, create_user
    from core.db import session_scope
    from core.models import Role

    with session_scope() as session:
        user = create_user(session, "ops", "a-long-password", Role.ADMIN)
        return {scope: create_api_token(session, user, scope, scopes={scope})
                for scope in ("read", "ingest")}
