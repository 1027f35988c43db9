"""The review queue over the API on the real services: the unlabeled mail a trained model is
least sure of, the most uncertain first; an answer is feedback and leaves the queue."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from core.auth import create_api_token, create_user
from core.db import session_scope
from core.models import Email, Feedback, Role
from tests.integration.conftest import LABELED, invoke
from tests.messages import write_generated_mail
from tests.rows import processed_emails
from tests.waiting import wait_for
from web import create_app

UNLABELED = 20


@pytest.fixture
def queue(trained, tmp_path):
    """The trained model's verdicts on 20 more generated emails, unlabeled."""
    write_generated_mail(tmp_path / "unlabeled", UNLABELED, first=LABELED)
    invoke("import", str(tmp_path / "unlabeled"))
    wait_for(lambda: processed_emails(LABELED + UNLABELED), timeout=120)
    with session_scope() as session:
        admin = create_user(session, "alice", "correct horse", Role.ADMIN)
        viewer = create_user(session, "victor", "battery staple", Role.VIEWER)
        tokens = {"admin": create_api_token(session, admin, "test"),
                  "viewer": create_api_token(session, viewer, "test")}
    return create_app().test_client(), tokens


def review(client, token: str, k: int) -> list[dict]:
    response = client.get(f"/api/review?k={k}", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["items"]


def test_the_queue_is_unlabeled_mail_the_model_is_least_sure_of(queue):
    client, tokens = queue
    items = review(client, tokens["viewer"], 5)
    assert len(items) == 5 and len({item["email"]["id"] for item in items}) == 5
    assert all(item["email"]["label"] is None for item in items)
    with session_scope() as session:
        unlabeled = session.execute(select(Email.id).where(Email.label.is_(None))).scalars()
        everyone = {item["email"]["id"]: item["uncertainty"]
                    for item in review(client, tokens["viewer"], UNLABELED)}
        assert set(everyone) == set(unlabeled)
    assert items[0]["uncertainty"] == min(everyone.values())  # the most uncertain first
    assert items[0]["prediction"]["model_id"] == 1

    answered = items[0]["email"]["id"]
    refused = client.post(f"/api/emails/{answered}/label", json={"label": "spam"},
                          headers={"Authorization": f"Bearer {tokens['viewer']}"})
    assert refused.status_code == 403
    answer = client.post(f"/api/emails/{answered}/label", json={"label": "spam"},
                         headers={"Authorization": f"Bearer {tokens['admin']}"})
    assert answer.status_code == 200
    assert answered not in {item["email"]["id"] for item in review(client, tokens["admin"],
                                                                   UNLABELED)}
    with session_scope() as session:
        feedback = session.scalar(select(Feedback).where(Feedback.email_id == answered))
        assert feedback.source == "api" and feedback.new_label.value == "spam"


@pytest.mark.parametrize("k", [0, 101, "many"])
def test_a_bad_queue_size_is_refused(queue, k):
    client, tokens = queue
    response = client.get(f"/api/review?k={k}",
                          headers={"Authorization": f"Bearer {tokens['viewer']}"})
    assert response.status_code == 422
