"""Rules of the layout that imports alone can break."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT

PROBE = """
import sys
import web, web.api, web.dashboard.views, web.webhooks.routes, core.search, workers.remote
app = web.create_app()
heavy = sorted(m for m in ("torch", "transformers", "sklearn") if m in sys.modules)
print(",".join(heavy) or "none")
"""


def test_the_web_app_loads_no_model_library():
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "none"


def test_ml_does_not_import_the_database_web_or_workers():
    for module in (REPO_ROOT / "ml").glob("*.py"):
        source = module.read_text()
        for forbidden in ("from core", "import core", "from web", "from workers", "flask",
                          "celery", "sqlalchemy"):
            assert forbidden not in source, f"{module.name} mentions {forbidden}"
