"""Fixtures the webhook tests share: the app's test client on committed rows, and an API
token that may post mail (an admin's, so it carries every scope)."""

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
