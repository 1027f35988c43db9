"""API token scopes, expiry and revocation, and the user and token commands, on real services."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import select, text, update

from cli.main import cli
from core import migrate
from core.auth import AuthError, create_api_token, create_user
from core.db import session_scope
from core.models import ApiToken, Role, User
from tests.conftest import scratch_database
from tests.rows import email_count
from web import create_app

RAW = b"From: a@example.com\r\nSubject: scoped\r\nMessage-ID: <scoped@example.com>\r\n\r\nhi\r\n"


@pytest.fixture
def app(committed, broker):
    from web.extensions import limiter

    app = create_app()
    with app.app_context():
        limiter.reset()
    return app


@pytest.fixture
def users(committed):
    with session_scope() as session:
        create_user(session, "alice", "correct horse", Role.ADMIN)
        create_user(session, "victor", "battery staple", Role.VIEWER)


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def cli_run(*args: str, **env) -> str:
    result = CliRunner().invoke(cli, list(args), env=env or None)
    assert result.exit_code == 0, result.output
    return result.output


def cli_fails(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code != 0, result.output
    return result.output


def new_token(user: str, scope: str, *extra: str) -> str:
    return cli_run("tokens", "create", "--user", user, "--name", f"{scope} token", "--scope",
                   scope, *extra).strip().splitlines()[-1]


def post_raw(client, token: str):
    return client.post("/webhooks/raw", data=RAW, content_type="message/rfc822",
                       headers=bearer(token))


def test_an_ingest_token_delivers_mail_and_reads_nothing(app, users):
    ingest = new_token("alice", "ingest")
    client = app.test_client()
    assert post_raw(client, ingest).status_code == 202
    assert client.post("/api/classify", data=RAW.replace(b"scoped", b"other"),
                       content_type="message/rfc822", headers=bearer(ingest)).status_code in (
        200, 202)
    for path in ("/api/emails", "/api/emails/1", "/api/emails/1/raw", "/api/models",
                 "/api/jobs/1", "/api/stats", "/api/search?q=x", "/api/openapi.json"):
        assert client.get(path, headers=bearer(ingest)).status_code == 403, path
    assert client.post("/api/models/train", json={"kind": "tfidf-nb"},
                       headers=bearer(ingest)).status_code == 403
    assert client.post("/api/emails/1/label", json={"label": "spam"},
                       headers=bearer(ingest)).status_code == 403


def test_a_read_token_reads_but_neither_ingests_nor_changes(app, users):
    read = new_token("alice", "read")
    client = app.test_client()
    assert client.get("/api/emails", headers=bearer(read)).status_code == 200
    assert post_raw(client, read).status_code == 403
    assert client.post("/api/classify", data=RAW, content_type="message/rfc822",
                       headers=bearer(read)).status_code == 403
    assert client.post("/api/models/train", json={"kind": "tfidf-nb"},
                       headers=bearer(read)).status_code == 403
    assert email_count() == 0


def test_an_admin_token_does_everything(app, users):
    admin = new_token("alice", "admin")
    client = app.test_client()
    assert post_raw(client, admin).status_code == 202
    assert client.get("/api/emails", headers=bearer(admin)).status_code == 200
    [email_id] = [item["email"]["id"] for item in
                  client.get("/api/emails", headers=bearer(admin)).get_json()["items"]]
    assert client.post(f"/api/emails/{email_id}/label", json={"label": "ham"},
                       headers=bearer(admin)).status_code == 200


def test_viewers_cannot_inject_mail(app, users):
    """The README says viewers cannot import: their tokens cannot reach the intake."""
    assert "read" in cli_fails("tokens", "create", "--user", "victor", "--name", "mta",
                               "--scope", "ingest")
    assert "read" in cli_fails("tokens", "create", "--user", "victor", "--name", "x",
                               "--scope", "admin")
    # A token made without scopes gets its role's (read for a viewer), as migrated tokens do.
    with session_scope() as session:
        victor = session.scalar(select(User).where(User.username == "victor"))
        token = create_api_token(session, victor, "default")
        from core.models import Scope

        with pytest.raises(AuthError):
            create_api_token(session, victor, "mta", scopes={Scope.INGEST})
    client = app.test_client()
    assert post_raw(client, token).status_code == 403
    assert client.post("/api/classify", data=RAW, content_type="message/rfc822",
                       headers=bearer(token)).status_code == 403
    assert client.get("/api/emails", headers=bearer(token)).status_code == 200
    assert email_count() == 0


def test_a_demoted_users_tokens_lose_what_the_role_no_longer_allows(app, users):
    admin = new_token("alice", "admin")
    ingest = new_token("alice", "ingest")
    with session_scope() as session:
        session.execute(text("UPDATE users SET role = 'viewer' WHERE username = 'alice'"))
    client = app.test_client()
    assert client.post("/api/models/rollback", headers=bearer(admin)).status_code == 403
    assert post_raw(client, ingest).status_code == 403
    assert client.get("/api/emails", headers=bearer(admin)).status_code == 200


def test_tokens_expire(app, users):
    token = new_token("alice", "read", "--expires-days", "30")
    client = app.test_client()
    assert client.get("/api/emails", headers=bearer(token)).status_code == 200
    listed = json.loads(cli_run("tokens", "list", "--json"))
    assert listed[0]["expires_at"] is not None
    with session_scope() as session:
        session.execute(update(ApiToken).values(expires_at=text("now() - interval '1 second'")))
    assert client.get("/api/emails", headers=bearer(token)).status_code == 401
    assert post_raw(client, new_token("alice", "ingest", "--expires-days", "1")).status_code \
        == 202
    assert "at least 1" in cli_fails("tokens", "create", "--user", "alice", "--name", "x",
                                     "--scope", "read", "--expires-days", "0")


def test_tokens_list_shows_everything_but_the_token_and_revoke_ends_it(app, users):
    ingest = new_token("alice", "ingest")
    read = new_token("victor", "read")
    client = app.test_client()
    assert post_raw(client, ingest).status_code == 202
    table = cli_run("tokens", "list")
    assert ingest not in table and read not in table
    assert ingest[:10] in table and read[:10] in table
    listed = json.loads(cli_run("tokens", "list", "--json"))
    assert {row["prefix"] for row in listed} == {ingest[:10], read[:10]}
    by_prefix = {row["prefix"]: row for row in listed}
    assert by_prefix[ingest[:10]]["scopes"] == ["ingest"]
    assert (by_prefix[ingest[:10]]["user"], by_prefix[ingest[:10]]["name"]) == \
        ("alice", "ingest token")
    assert by_prefix[ingest[:10]]["last_used_at"] is not None
    assert by_prefix[read[:10]]["last_used_at"] is None
    assert not any(row["revoked_at"] for row in listed)
    assert all(set(row) >= {"id", "user", "name", "created_at"} for row in listed)
    assert [r["prefix"] for r in json.loads(cli_run("tokens", "list", "--user", "victor",
                                                    "--json"))] == [read[:10]]

    cli_run("tokens", "revoke", ingest[:10])
    assert post_raw(client, ingest).status_code == 401
    cli_run("tokens", "revoke", str(by_prefix[read[:10]]["id"]))
    assert client.get("/api/emails", headers=bearer(read)).status_code == 401
    assert all(row["revoked_at"] for row in json.loads(cli_run("tokens", "list", "--json")))
    assert "no token" in cli_fails("tokens", "revoke", "ss_nothing")


def test_users_disable_stops_their_tokens_and_passwd_changes_the_password(app, users):
    token = new_token("alice", "admin")
    client = app.test_client()
    assert client.get("/api/emails", headers=bearer(token)).status_code == 200
    cli_run("users", "passwd", "alice", SPAMSIFT_PASSWORD="a new long password")
    from core.auth import authenticate

    with session_scope() as session:
        assert authenticate(session, "alice", "correct horse") is None
        assert authenticate(session, "alice", "a new long password") is not None
    assert "8 characters" in CliRunner().invoke(
        cli, ["users", "passwd", "alice"], env={"SPAMSIFT_PASSWORD": "short"}).output
    assert client.get("/api/emails", headers=bearer(token)).status_code == 200

    cli_run("users", "disable", "alice")
    assert client.get("/api/emails", headers=bearer(token)).status_code == 401
    assert post_raw(client, token).status_code == 401
    with session_scope() as session:
        assert authenticate(session, "alice", "a new long password") is None
    assert all(row["revoked_at"] for row in json.loads(cli_run("tokens", "list", "--json")))
    assert "no user" in cli_fails("users", "disable", "nobody")


def test_migration_gives_existing_tokens_the_scopes_of_todays_behaviour():
    with scratch_database("spamsift_test_token_migration") as (url, engine):
        migrate.upgrade(url, "0001")
        with engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO users (id, username, password_hash, role) VALUES "
                "(1, 'admin', 'x', 'admin'), (2, 'viewer', 'x', 'viewer')"))
            connection.execute(text(
                "INSERT INTO api_tokens (user_id, name, token_hash, prefix) VALUES "
                "(1, 'a', decode(repeat('aa', 32), 'hex'), 'ss_a'), "
                "(2, 'v', decode(repeat('bb', 32), 'hex'), 'ss_v')"))
        migrate.upgrade(url)
        with engine.connect() as connection:
            rows = connection.execute(text(
                "SELECT name, scopes, expires_at, revoked_at FROM api_tokens ORDER BY name"))
            assert [tuple(row) for row in rows] == [("a", ["admin"], None, None),
                                                    ("v", ["read"], None, None)]


def test_a_token_in_steady_use_writes_its_last_use_once_a_minute(app, users):
    """Each webhook delivery would otherwise commit (and flush to disk) twice."""
    token = new_token("alice", "ingest")
    client = app.test_client()

    def last_used():
        with session_scope() as session:
            return session.scalar(select(ApiToken.last_used_at))

    assert post_raw(client, token).status_code == 202
    first = last_used()
    assert first is not None
    assert post_raw(client, token).status_code == 202
    assert last_used() == first
    with session_scope() as session:
        session.execute(update(ApiToken).values(
            last_used_at=text("now() - interval '61 seconds'")))
    assert post_raw(client, token).status_code == 202
    assert last_used() > first
