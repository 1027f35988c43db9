"""The dashboard in a real browser: Debian's chromium driven by Playwright against the app
served over HTTP, with a real worker behind it. Screenshots go to var/screenshots."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest
from sqlalchemy import select
from werkzeug.serving import make_server

from core.auth import create_user
from core.db import session_scope
from core.intake import Incoming, store_emails
from core.models import Email, Label, Role
from workers.pipeline import parse as apply_parse
from tests.conftest import FIXTURES, REPO_ROOT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = REPO_ROOT / "var" / "screenshots"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--disable-quic"]

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium not installed")

HOSTILE_HTML = (
    b"From: attacker@evil.example\r\nSubject: Hostile HTML\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n\r\n"
    b"<h1>Totally normal newsletter</h1>"
    b"<script>window.top.PWNED = 1; alert('script ran')</script>"
    b"<img src=x onerror=\"window.top.PWNED = 2; alert('onerror ran')\">"
    b"<p onmouseover=\"alert('hover ran')\">Move the mouse here</p>"
    b"<a href=\"javascript:alert('link ran')\">Click me</a>"
    b"<svg onload=\"alert('svg ran')\"></svg>\r\n")


@pytest.fixture
def live_server(committed, broker, celery_worker):
    from web import create_app
    from web.extensions import limiter

    app = create_app()
    with app.app_context():
        limiter.reset()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture
def seeded(committed):
    """An admin, the hand-written labeled mail, one unlabeled email and a hostile one."""
    with session_scope() as session:
        create_user(session, "admin", "admin-password", Role.ADMIN)
        for line in (FIXTURES / "labeled.jsonl").read_text().splitlines():
            record = json.loads(line)
            raw = (f"From: sender@example.com\r\nSubject: {record['subject']}\r\n\r\n"
                   f"{record['text']}\r\n").encode()
            store_emails(session, [Incoming(raw, "test", Label(record["label"]), "import")])
        [plain] = store_emails(session, [Incoming(
            (FIXTURES / "mail" / "plain.eml").read_bytes(), "test")])
        [hostile] = store_emails(session, [Incoming(HOSTILE_HTML, "test")])
        for email in session.scalars(select(Email)):
            apply_parse(email)  # as the bulk workers would have
        return {"plain": plain.email_id, "hostile": hostile.email_id}


@pytest.fixture
def page(live_server):
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 860})
        page = context.new_page()
        page.dialogs = []
        page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message),
                                          dialog.dismiss()))
        page.set_default_timeout(20_000)
        yield page
        browser.close()


def log_in(page, base: str) -> None:
    page.goto(base + "/")
    assert "/login" in page.url
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "admin-password")
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")


def test_log_in_open_an_email_and_mark_it_spam(page, live_server, seeded):
    log_in(page, live_server)
    page.screenshot(path=str(SCREENSHOTS / "overview.png"), full_page=True)
    page.click("text=Mail")
    page.wait_for_selector("table.mail")
    page.screenshot(path=str(SCREENSHOTS / "mail.png"), full_page=True)
    page.click("text=Lunch on Friday?")
    assert page.inner_text("#label") == "none"
    page.click("button:has-text('Mark spam')")
    page.wait_for_selector("text=Marked as spam.")
    assert page.inner_text("#label") == "spam"
    page.screenshot(path=str(SCREENSHOTS / "email.png"), full_page=True)


def test_training_progress_bar_moves(page, live_server, seeded):
    log_in(page, live_server)
    page.goto(live_server + "/models")
    page.select_option("select[name=kind]", "tfidf-nb")
    page.click("#train")
    page.wait_for_url("**/jobs/*")
    start = float(page.get_attribute(".job-progress", "value"))
    page.locator(".job-state", has_text="succeeded").wait_for(timeout=120_000)
    bar = page.query_selector(".job-progress")
    end, full = float(bar.get_attribute("value")), float(bar.get_attribute("max"))
    assert start == 0 and end == full == 40
    assert page.inner_text(".job-result").startswith("model ")
    page.screenshot(path=str(SCREENSHOTS / "job.png"), full_page=True)
    page.goto(live_server + "/models")
    page.wait_for_selector("svg.chart")
    page.screenshot(path=str(SCREENSHOTS / "models.png"), full_page=True)


def test_hostile_html_renders_without_running(page, live_server, seeded):
    log_in(page, live_server)
    page.goto(f"{live_server}/mail/{seeded['hostile']}")
    frame = page.frame_locator("iframe.email-html")
    assert frame.locator("h1").inner_text() == "Totally normal newsletter"
    frame.locator("p").hover()
    frame.locator("a").click()
    page.wait_for_timeout(500)
    assert page.dialogs == []
    assert page.evaluate("window.PWNED") is None
    assert frame.locator("script").count() == 0
    assert frame.locator("[onerror], [onmouseover], [onload]").count() == 0
    page.screenshot(path=str(SCREENSHOTS / "hostile-email.png"), full_page=True)


def test_the_review_queue_labels_with_the_keyboard(page, live_server, seeded):
    """A model judges the two unlabeled emails; on the Review page `j`, `k` move and `s`
    marks the selected one spam, which leaves the queue."""
    judge_with_a_trained_model(seeded["plain"], seeded["hostile"])
    log_in(page, live_server)
    page.click("text=Review")
    rows = page.locator("[data-review-row]")
    assert rows.count() == 2
    selected = page.locator("[data-review-row].selected")
    selected.wait_for()  # the keys work once the page's script has started
    page.keyboard.press("j")
    page.locator("[data-review-row]:nth-child(2).selected").wait_for()
    page.keyboard.press("k")
    page.locator("[data-review-row]:nth-child(1).selected").wait_for()
    assert selected.count() == 1
    first = rows.nth(0).locator("[data-open]").get_attribute("href").rsplit("/", 1)[1]
    page.screenshot(path=str(SCREENSHOTS / "review.png"), full_page=True)
    page.keyboard.press("s")
    page.wait_for_selector("text=Marked as spam.")
    assert page.locator("[data-review-row]").count() == 1
    with session_scope() as session:
        email = session.get(Email, int(first))
        assert email.label == Label.SPAM and email.label_source == "dashboard"


def judge_with_a_trained_model(*email_ids: int) -> None:
    """Train a model on the labeled mail and wait until it has judged these emails."""
    from tests.waiting import wait_for
    from workers.client import queue_training

    with session_scope() as session:
        queue_training(session, "tfidf-nb")
    wait_for(lambda: all(verdict_of_email(email_id) for email_id in email_ids), timeout=120)


def verdict_of_email(email_id: int) -> bool:
    with session_scope() as session:
        return session.get(Email, email_id).verdict_id is not None


UNLABELED_SPAM = (
    b"From: \"Prize Desk\" <claims@winners.example>\r\nTo: alice@example.org\r\n"
    b"Date: Sun, 06 Dec 2026 09:14:00 +0000\r\nMessage-ID: <prize-4411@winners.example>\r\n"
    b"Subject: You have WON - claim your cash prize now\r\n\r\n"
    b"Congratulations! You have won $1,000,000. Act now: send your bank details to claim "
    b"your cash prize before it expires.\r\n")


def test_the_readme_screenshot_shows_judged_mail(page, live_server, seeded):
    """The README's picture of the dashboard (docs/dashboard.png is a copy of what this writes
    to var/screenshots/readme.png): a model trained on the hand-written mail, an unlabeled
    email's verdict with the terms behind it."""
    with session_scope() as session:
        [spam] = store_emails(session, [Incoming(UNLABELED_SPAM, "test")])
        apply_parse(session.get(Email, spam.email_id))
    judge_with_a_trained_model(seeded["plain"], spam.email_id)
    log_in(page, live_server)
    page.goto(f"{live_server}/mail/{spam.email_id}")
    assert page.inner_text("#verdict") in ("spam", "unsure")
    assert page.locator("#reasons tr").count() > 1
    page.screenshot(path=str(SCREENSHOTS / "readme.png"))
