"""The REST API, the dashboard and their auth on real services."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from core.auth import create_api_token, create_user
from core.db import session_scope
from core.intake import Incoming, store_emails
from core.models import (Email, Feedback, Job, JobState, Label, Prediction, Role, TrainedModel,
                         Verdict)
from tests.integration.conftest import csrf_token, login
from web import create_app

PUBLIC_ENDPOINTS = {"auth.login", "health.healthz", "static"}


@pytest.fixture
def app(committed, broker):
    from web.extensions import limiter

    app = create_app()
    with app.app_context():
        limiter.reset()  # rate-limit counters of earlier tests
    return app


@pytest.fixture
def people(committed):
    with session_scope() as session:
        admin = create_user(session, "alice", "correct horse", Role.ADMIN)
        viewer = create_user(session, "victor", "battery staple", Role.VIEWER)
        return {"admin": create_api_token(session, admin, "test"),
                "viewer": create_api_token(session, viewer, "test")}


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def add_mail(*messages: tuple[str, str, Label | None]) -> list[int]:
    with session_scope() as session:
        stored = store_emails(session, [
            Incoming(f"From: {sender}\r\nSubject: {subject}\r\n\r\nbody of {subject}\r\n"
                     .encode(), "test", label, "import" if label else None)
            for subject, sender, label in messages])
        ids = [s.email_id for s in stored]
        for email in session.scalars(select(Email).where(Email.id.in_(ids))):
            from workers.pipeline import parse as apply_parse

            apply_parse(email)
        return ids


def test_every_route_but_login_healthz_and_webhooks_refuses_anonymous(app):
    # From another machine: /healthz/details answers local clients without credentials.
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = "203.0.113.7"
    checked = 0
    for rule in app.url_map.iter_rules():
        if rule.endpoint in PUBLIC_ENDPOINTS or rule.endpoint.startswith("webhooks."):
            continue
        path = re.sub(r"<(?:int:)?(\w+)>", "1", rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            response = client.open(path, method=method)
            assert response.status_code in (302, 400, 401), (method, path, response.status_code)
            if response.status_code == 302:
                assert "/login" in response.headers["Location"], (method, path)
            checked += 1
    assert checked >= 25


def test_api_emails_filters_detail_raw_and_labels(app, people):
    ids = add_mail(("Cheap watches", "promo@bulk.example", Label.SPAM),
                   ("Team lunch", "bob@example.com", Label.HAM),
                   ("Unlabelled note", "carol@example.com", None))
    client = app.test_client()
    everything = client.get("/api/emails", headers=bearer(people["viewer"])).get_json()
    assert everything["total"] == 3 and len(everything["items"]) == 3
    spam = client.get("/api/emails?label=spam", headers=bearer(people["viewer"])).get_json()
    assert [i["email"]["subject"] for i in spam["items"]] == ["Cheap watches"]
    unlabeled = client.get("/api/emails?label=none", headers=bearer(people["viewer"]))
    assert [i["email"]["id"] for i in unlabeled.get_json()["items"]] == [ids[2]]
    by_sender = client.get("/api/emails?sender=example.com&per_page=1",
                           headers=bearer(people["viewer"])).get_json()
    assert by_sender["total"] == 2 and len(by_sender["items"]) == 1
    words = client.get("/api/emails?q=lunch", headers=bearer(people["viewer"])).get_json()
    assert [i["email"]["id"] for i in words["items"]] == [ids[1]]

    detail = client.get(f"/api/emails/{ids[0]}", headers=bearer(people["viewer"])).get_json()
    assert detail["email"]["sender"] == "promo@bulk.example" and detail["prediction"] is None
    raw = client.get(f"/api/emails/{ids[0]}/raw", headers=bearer(people["viewer"]))
    assert raw.mimetype == "message/rfc822" and raw.data.startswith(b"From: promo@")

    refused = client.post(f"/api/emails/{ids[2]}/label", json={"label": "spam"},
                          headers=bearer(people["viewer"]))
    assert refused.status_code == 403
    labeled = client.post(f"/api/emails/{ids[2]}/label", json={"label": "spam"},
                          headers=bearer(people["admin"]))
    assert labeled.status_code == 200 and labeled.get_json()["changed"] is True
    with session_scope() as session:
        feedback = session.scalars(select(Feedback)).one()
        assert (feedback.email_id, feedback.old_label, feedback.new_label, feedback.source) == \
            (ids[2], None, Label.SPAM, "api")


@pytest.mark.parametrize("method,path,body,status", [
    ("GET", "/api/emails/999999", None, 404),
    ("GET", "/api/emails?verdict=maybe", None, 422),
    ("GET", "/api/emails?per_page=100000", None, 422),
    ("POST", "/api/emails/999999/label", {"label": "spam"}, 404),
    ("GET", "/api/models/999999", None, 404),
    ("GET", "/api/jobs/999999", None, 404),
    ("POST", "/api/models/train", {"kind": "magic"}, 422),
    ("POST", "/api/models/999999/activate", None, 404),
    ("POST", "/api/models/rollback", None, 409),
])
def test_api_errors_are_json(app, people, method, path, body, status):
    response = app.test_client().open(path, method=method, json=body,
                                      headers=bearer(people["admin"]))
    assert response.status_code == status
    assert response.is_json and response.get_json()


def test_api_label_rejects_unknown_labels(app, people):
    [email_id] = add_mail(("Hello", "a@example.com", None))
    response = app.test_client().post(f"/api/emails/{email_id}/label", json={"label": "eggs"},
                                      headers=bearer(people["admin"]))
    assert response.status_code == 422
    assert "label" in response.get_json()["errors"]["json"]


def test_openapi_document_needs_auth(app, people):
    client = app.test_client()
    assert client.get("/api/openapi.json").status_code == 401
    spec = client.get("/api/openapi.json", headers=bearer(people["viewer"])).get_json()
    assert "/api/emails" in spec["paths"] and "bearerAuth" in spec["components"][
        "securitySchemes"]


def test_dashboard_login_label_and_roles(app, people):
    [email_id] = add_mail(("Quarterly numbers", "cfo@example.com", None))
    client = app.test_client()
    assert client.get("/").status_code == 302
    bad = login(client, "alice", "wrong password")
    assert bad.status_code == 401 and "wrong password" in bad.get_data(as_text=True)
    assert login(client, "alice", "correct horse").status_code == 302
    for page in ("/", "/mail", f"/mail/{email_id}", "/models", "/jobs", "/import",
                 "/search", "/search?q=quarterly&mode=keyword&label=none", "/ask",
                 "/mail?verdict=spam&label=none&sender=x&since=2024-01-01&until=2030-01-01"):
        response = client.get(page)
        assert response.status_code == 200, page
        if "q=quarterly" in page:
            assert "Quarterly numbers" in response.get_data(as_text=True)
        assert "Content-Security-Policy" in response.headers

    token = csrf_token(client, f"/mail/{email_id}")
    assert client.post(f"/mail/{email_id}/label", data={"label": "spam"}).status_code == 400
    marked = client.post(f"/mail/{email_id}/label", data={"label": "spam", "csrf_token": token})
    assert marked.status_code == 302
    assert 'id="label">spam<' in client.get(f"/mail/{email_id}").get_data(as_text=True)

    viewer = app.test_client()
    login(viewer, "victor", "battery staple")
    assert "Mark spam" not in viewer.get(f"/mail/{email_id}").get_data(as_text=True)
    token = csrf_token(viewer, "/mail")
    assert viewer.post(f"/mail/{email_id}/label",
                       data={"label": "ham", "csrf_token": token}).status_code == 403
    assert viewer.get("/import").status_code == 403


def test_login_is_rate_limited(app, people):
    client = app.test_client()
    codes = [login(client, "alice", "nope").status_code for _ in range(12)]
    assert codes[:10] == [401] * 10 and codes[-1] == 429


def test_email_html_is_shown_without_scripts_or_remote_images(app, people):
    raw = (b"From: attacker@evil.example\r\nSubject: Payload\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: text/html; charset=utf-8\r\n\r\n"
           b"<p onclick=\"alert(1)\">Hello <b>there</b></p><script>alert('x')</script>"
           b"<img src=\"https://tracker.example/pixel.gif\" onerror=\"alert(2)\">"
           b"<a href=\"javascript:alert(3)\">click</a><iframe src=\"https://evil.example\">"
           b"</iframe>\r\n")
    with session_scope() as session:
        [stored] = store_emails(session, [Incoming(raw, "test")])
    client = app.test_client()
    login(client, "alice", "correct horse")
    page = client.get(f"/mail/{stored.email_id}").get_data(as_text=True)
    frame = re.search(r'<iframe class="email-html" sandbox="" [^>]*srcdoc="([^"]*)"', page)
    assert frame, "the message HTML is in a sandboxed iframe"
    srcdoc = frame[1]
    assert "Hello" in srcdoc
    for payload in ("script", "onclick", "onerror", "javascript:", "tracker.example",
                    "evil.example"):
        assert payload not in srcdoc.lower(), payload


def test_api_models_train_activate_rollback_and_stats(app, people, celery_worker):
    add_mail(*[(f"Win money now {i}", "spam@bulk.example", Label.SPAM) for i in range(6)],
             *[(f"Meeting notes {i}", "team@example.com", Label.HAM) for i in range(6)])
    client = app.test_client()
    viewer_try = client.post("/api/models/train", json={"kind": "tfidf-nb"},
                             headers=bearer(people["viewer"]))
    assert viewer_try.status_code == 403
    job = client.post("/api/models/train", json={"kind": "tfidf-nb"},
                      headers=bearer(people["admin"])).get_json()
    from tests.integration.test_import import wait_for

    def finished():
        state = client.get(f"/api/jobs/{job['id']}", headers=bearer(people["admin"])).get_json()
        return state if state["state"] in ("succeeded", "failed") else None

    done = wait_for(finished, timeout=120)
    assert done["state"] == "succeeded", done
    first = done["result"]["model_id"]
    second_job = client.post("/api/models/train", json={"kind": "tfidf-lr"},
                             headers=bearer(people["admin"])).get_json()
    job = second_job
    second = wait_for(finished, timeout=120)["result"]["model_id"]
    listed = client.get("/api/models", headers=bearer(people["viewer"])).get_json()
    assert [(m["id"], m["is_active"]) for m in listed] == [(second, True), (first, False)]
    detail = client.get(f"/api/models/{second}", headers=bearer(people["viewer"])).get_json()
    assert detail["curves"]["roc"]
    back = client.post("/api/models/rollback", headers=bearer(people["admin"])).get_json()
    assert back["id"] == first and back["is_active"]
    again = client.post(f"/api/models/{second}/activate", headers=bearer(people["admin"]))
    assert again.get_json()["is_active"] is True

    def rescored():  # activation re-scores the mail in the background
        with session_scope() as session:
            return dict(session.execute(
                select(Prediction.verdict, func.count()).join(
                    Email, Email.verdict_id == Prediction.id)
                .where(Prediction.model_id == second).group_by(Prediction.verdict)).all())

    verdicts = wait_for(lambda: sum(rescored().values()) == 12 and rescored())
    stats = client.get("/api/stats?days=7", headers=bearer(people["viewer"])).get_json()
    assert stats[-1]["emails"] == 12
    assert stats[-1]["spam"] == verdicts.get(Verdict.SPAM, 0) > 0
    assert stats[-1]["spam"] + stats[-1]["unsure"] + stats[-1]["ham"] == 12
    with session_scope() as session:
        assert session.scalar(select(TrainedModel.id).where(TrainedModel.is_active)) == second


def test_api_classify_uploads_and_answers(app, people, celery_worker):
    from click.testing import CliRunner

    from cli.main import cli

    add_mail(*[(f"Cheap pills offer {i}", "spam@bulk.example", Label.SPAM) for i in range(6)],
             *[(f"Project status {i}", "team@example.com", Label.HAM) for i in range(6)])
    assert CliRunner().invoke(cli, ["train", "baseline", "--wait"]).exit_code == 0
    raw = b"From: x@bulk.example\r\nSubject: Cheap pills offer\r\n\r\ncheap pills\r\n"
    response = app.test_client().post("/api/classify?wait=10000", data=raw,
                                      content_type="message/rfc822",
                                      headers=bearer(people["admin"]))
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "classified" and 0.0 <= body["p_spam"] <= 1.0
    assert body["verdict"] in ("spam", "unsure", "ham") and body["model_id"]
    empty = app.test_client().post("/api/classify", data=b"", headers=bearer(people["admin"]))
    assert empty.status_code == 422


def test_dashboard_upload_imports_on_a_worker(app, people, celery_worker):
    import io
    import zipfile

    from core.config import get_settings
    from tests.conftest import FIXTURES
    from tests.integration.test_import import wait_for

    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        for name in ("plain.eml", "html_only.eml"):
            bundle.writestr(f"mail/{name}", (FIXTURES / "mail" / name).read_bytes())
    client = app.test_client()
    login(client, "alice", "correct horse")
    token = csrf_token(client, "/import")
    wrong = client.post("/import", data={"csrf_token": token, "file": (io.BytesIO(b"x"),
                                                                        "notes.docx")})
    assert wrong.status_code == 422
    response = client.post("/import", data={"csrf_token": token, "label": "spam",
                                            "file": (io.BytesIO(archive.getvalue()),
                                                     "export.zip")})
    assert response.status_code == 302 and "/jobs/" in response.headers["Location"]
    job_id = int(response.headers["Location"].rsplit("/", 1)[1])

    def finished():
        job = client.get(f"/api/jobs/{job_id}").get_json()
        return job if job["state"] in ("succeeded", "failed") else None

    job = wait_for(finished, timeout=60)
    assert job["state"] == "succeeded" and job["result"]["imported"] == 2
    with session_scope() as session:
        assert session.scalars(select(Email.label)).all() == [Label.SPAM, Label.SPAM]
    assert not any((get_settings().var_dir / "uploads").glob("*/export.zip"))


def test_dashboard_queues_a_lora_fine_tune_and_cancels_it(app, people, session_worker_paused):
    """The Models form queues a fine-tune with its options (the suite's worker is paused, so
    it stays queued); the job page offers Cancel to an admin; a bad option is refused."""
    client = app.test_client()
    login(client, "alice", "correct horse")
    token = csrf_token(client, "/models")
    refused = client.post("/models/train", data={"kind": "lora", "max_length": "0",
                                                 "csrf_token": token}, follow_redirects=True)
    assert "Not trained: max_length must be at least 1" in refused.get_data(as_text=True)
    queued = client.post("/models/train", data={"kind": "lora", "epochs": "1",
                                                "max_length": "64", "csrf_token": token})
    assert queued.status_code == 302
    with session_scope() as session:
        job = session.scalars(select(Job)).one()
        assert job.params["kind"] == "lora" and job.state == JobState.QUEUED
        assert job.params["options"]["epochs"] == 1
        assert job.params["options"]["max_length"] == 64
        assert job.params["options"]["r"] == 8  # every setting recorded, defaults too
    page = client.get(f"/jobs/{job.id}").get_data(as_text=True)
    assert 'id="cancel-job"' in page
    cancelled = client.post(f"/jobs/{job.id}/cancel", data={"csrf_token": token},
                            follow_redirects=True)
    assert f"Job {job.id} cancelled." in cancelled.get_data(as_text=True)
    assert 'id="cancel-job"' not in cancelled.get_data(as_text=True)
    with session_scope() as session:
        assert session.get(Job, job.id).state == JobState.CANCELLED
