"""`make test` leaves the choice of test servers to the suite (tests/conftest.py), so that a
machine without PostgreSQL or Redis gets the suite's own instead of a connection error."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import REPO_ROOT


@pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")
@pytest.mark.parametrize("target", ["test", "test-load"])
def test_the_test_targets_pin_no_server(target):
    commands = subprocess.run(["make", "-n", target], cwd=REPO_ROOT, capture_output=True,
                              text=True, check=True, timeout=60).stdout
    [pytest_command] = [line for line in commands.splitlines() if "-m pytest" in line]
    assert "SPAMSIFT_TEST_" not in pytest_command
