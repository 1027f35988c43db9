"""The README is the operator's reference: every setting the code reads is in it."""

from __future__ import annotations

import re

from tests.conftest import REPO_ROOT


def test_every_setting_is_documented():
    source = (REPO_ROOT / "core" / "config.py").read_text()
    read = set(re.findall(r'env_\w+\(\s*"([A-Z0-9_]+)"', source))
    readme = (REPO_ROOT / "README.md").read_text()
    documented = set(re.findall(r"SPAMSIFT_([A-Z0-9_]+)", readme))
    assert read and sorted(read - documented) == []


def test_every_picture_the_readme_shows_is_in_the_repository():
    readme = (REPO_ROOT / "README.md").read_text()
    pictures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", readme)
    assert pictures and [p for p in pictures if not (REPO_ROOT / p).is_file()] == []
