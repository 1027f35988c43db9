"""The built package carries what its entry points need: an installed spamsift (the Docker
image installs the wheel) can migrate a new database and serve its templates."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import inspect

from tests.conftest import REPO_ROOT, scratch_database

BUILD_LEFTOVERS = (".git", ".venv", "var", "build", "dist", "*.egg-info", "__pycache__",
                   ".pytest_cache", "screenshots")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel `pip install .` builds, from a copy of the source tree (the build leaves
    its own files behind)."""
    source = tmp_path_factory.mktemp("source") / "spamsift"
    shutil.copytree(REPO_ROOT, source, ignore=shutil.ignore_patterns(*BUILD_LEFTOVERS))
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                             "--no-build-isolation", "--quiet", "-w", str(out), str(source)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    (built,) = out.glob("spamsift-*.whl")
    return built


def test_the_wheel_carries_migrations_templates_and_static_files(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    needed = [path.relative_to(REPO_ROOT).as_posix() for folder in ("migrations", "web")
              for path in (REPO_ROOT / folder).rglob("*")
              if path.is_file() and "__pycache__" not in path.parts]
    assert [path for path in needed if path not in names] == []
    assert any(name.startswith("migrations/versions/0001_") for name in names)


def test_an_installed_spamsift_migrates_a_new_database(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = ("import sys, core.migrate as m; "
             "assert m.__file__.startswith(sys.argv[1]), m.__file__; m.upgrade(sys.argv[2])")
    with scratch_database("spamsift_packaging") as (url, engine):
        # Run from elsewhere, so nothing can come from the source tree.
        result = subprocess.run([sys.executable, "-c", probe, str(site), url], cwd=tmp_path,
                                env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        tables = set(inspect(engine).get_table_names())
    assert {"emails", "chunks", "predictions", "scheduled_runs", "alembic_version"} <= tables
