"""The whole SpamAssassin corpus imports in one command, with the counts of its MANIFEST."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from cli.main import cli
from core.db import session_scope
from core.models import Email, Label
from tests.conftest import CORPUS_DIR

pytestmark = pytest.mark.skipif(not (CORPUS_DIR / "MANIFEST.md").exists(),
                                reason="the SpamAssassin corpus is not beside the project")


def manifest_counts() -> dict[str, int]:
    manifest = (CORPUS_DIR / "MANIFEST.md").read_text()
    match = re.search(r"\*\*total\*\* \| \| ham (\d+) / spam (\d+) \| \*\*(\d+)\*\*", manifest)
    assert match, "MANIFEST.md has no totals line"
    return {"ham": int(match[1]), "spam": int(match[2]), "total": int(match[3])}


def test_whole_corpus_imports_once(committed, broker):
    from workers.app import celery_app

    expected = manifest_counts()
    paths = [str(p) for p in sorted(CORPUS_DIR.iterdir())]
    runner = CliRunner()
    try:
        first = runner.invoke(cli, ["import", *paths, "--label-from-path"])
        assert first.exit_code == 0, first.output
        assert (f"imported {expected['total']} (ham {expected['ham']}, spam {expected['spam']})"
                ", duplicates 0, failed 0" in first.output)
        with session_scope() as session:
            counts = dict(session.execute(
                select(Email.label, func.count()).group_by(Email.label)).all())
        assert counts == {Label.HAM: expected["ham"], Label.SPAM: expected["spam"]}

        second = runner.invoke(cli, ["import", *paths, "--label-from-path"])
        assert second.exit_code == 0, second.output
        assert f"imported 0, duplicates {expected['total']}, failed 0" in second.output
    finally:
        celery_app.control.purge()  # the parse tasks are not this test's business
