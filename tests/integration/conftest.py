"""Fixtures the integration tests share: the app's test client on committed rows, an API
token that may post mail (an admin's, so it carries every scope), and the suite's worker
paused."""

from __future__ import annotations

import pytest


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
