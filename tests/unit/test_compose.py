"""The compose stack, checked without a Docker engine: `docker-compose config` validates it
against the Compose schema and resolves it, and the resolved stack is what the README says:
every service named there, a worker for every queue, migrations before anything uses the
database, a healthcheck on each long-running service, secrets required from the
environment."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
import yaml

from tests.conftest import REPO_ROOT
from workers.names import QUEUES

SECRETS = {"POSTGRES_PASSWORD": "a-database-password",
           "SPAMSIFT_SECRET_KEY": "k" * 40}
ONE_SHOT = {"migrate"}


def compose_config(**env: str) -> subprocess.CompletedProcess:
    docker_compose = shutil.which("docker-compose")
    assert docker_compose, "docker-compose is missing: run scripts/system-deps.sh"
    environment = {k: v for k, v in os.environ.items() if k not in SECRETS}
    return subprocess.run([docker_compose, "-f", str(REPO_ROOT / "docker-compose.yml"),
                           "config"], env={**environment, **env}, capture_output=True,
                          text=True, timeout=60, cwd=REPO_ROOT)


@pytest.fixture(scope="module")
def stack() -> dict:
    result = compose_config(**SECRETS)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["services"]


@pytest.mark.parametrize("secret", sorted(SECRETS))
def test_each_secret_is_required_from_the_environment(secret):
    result = compose_config(**{k: v for k, v in SECRETS.items() if k != secret})
    assert result.returncode != 0 and secret in result.stderr


def test_every_service_the_readme_names_exists(stack):
    readme = (REPO_ROOT / "README.md").read_text()
    production = readme[readme.index("## Production"):]
    named = set(re.findall(r"`([a-z][a-z-]+)` service", production))
    assert named and named <= set(stack)


def test_a_worker_serves_every_queue_and_realtime_has_its_own(stack):
    served: dict[str, list[str]] = {}
    for name, service in stack.items():
        command = service.get("command") or []
        if command[:2] == ["spamsift", "worker"]:
            queues = command[command.index("-Q") + 1].split(",")
            for queue in queues:
                served.setdefault(queue, []).append(name)
            assert "realtime" not in queues or queues == ["realtime"], name
    assert set(served) == set(QUEUES)


def test_migrations_run_once_before_the_services_that_use_the_database(stack):
    assert stack["migrate"]["command"] == ["spamsift", "db", "upgrade"]
    assert stack["migrate"]["restart"] == "no"
    for name, service in stack.items():
        if name in ONE_SHOT or "build" not in service:
            continue
        assert service["depends_on"]["migrate"]["condition"] == \
            "service_completed_successfully", name


def test_each_long_running_service_has_a_healthcheck_and_restarts(stack):
    for name, service in stack.items():
        if name in ONE_SHOT:
            continue
        assert service["healthcheck"]["test"], name
        if "build" in service:
            assert service["restart"] == "unless-stopped", name


def test_the_web_serves_with_threads_and_data_is_kept_in_volumes(stack):
    assert stack["web"]["command"][:2] == ["spamsift", "web"]  # gthread (cli.process_commands)
    assert "/var/lib/postgresql/data" in mounted(stack["postgres"])
    assert "--appendonly" in stack["redis"]["command"]
    assert "/data" in mounted(stack["redis"])
    assert stack["postgres"]["image"].startswith("pgvector/pgvector:")


def mounted(service: dict) -> set[str]:
    """Where named volumes are mounted (``name:target[:mode]`` or the long form)."""
    return {v["target"] if isinstance(v, dict) else v.split(":")[1]
            for v in service.get("volumes", [])}


def test_every_spamsift_service_writes_metrics_where_the_web_reads_them(stack):
    for name, service in stack.items():
        if "build" in service:
            assert service["environment"]["SPAMSIFT_METRICS_DIR"] in mounted(service), name
