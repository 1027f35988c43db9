"""The REST API: flask-smorest blueprints under /api, OpenAPI at /api/openapi.json.

Every endpoint needs a bearer API token (``spamsift tokens create``) or a dashboard
session; changes (labels, training, activation) need the admin role.
"""

from __future__ import annotations

from web.api.emails import blueprint as emails
from web.api.jobs import blueprint as jobs
from web.api.models import blueprint as models
from web.api.search import blueprint as search
from web.api.stats import blueprint as stats

BLUEPRINTS = (emails, models, jobs, stats, search)

SECURITY_SCHEMES = {"bearerAuth": {"type": "http", "scheme": "bearer",
                                   "description": "an API token from `spamsift tokens create`"}}


def register(api) -> None:
    api.spec.components.security_scheme("bearerAuth", SECURITY_SCHEMES["bearerAuth"])
    for blueprint in BLUEPRINTS:
        api.register_blueprint(blueprint, url_prefix="/api")
