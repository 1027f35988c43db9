"""Inbound webhooks: raw MIME, Mailgun, SendGrid Inbound Parse and Postmark.

Each endpoint authenticates the way its provider signs, turns the post into raw RFC 822
bytes, and hands them to ``accept``, which stores, enqueues and answers in the status codes
that provider understands.
"""

from flask import Blueprint, g, request

from core.config import get_settings
from core.metrics import count
from web.extensions import limiter

blueprint = Blueprint("webhooks", __name__, url_prefix="/webhooks")
# Once, here: a limit added in create_app would count each request once per app made.
limiter.limit(lambda: get_settings().webhook_rate_limit)(blueprint)


@blueprint.after_request
def count_delivery(response):
    """One count per delivery: its provider (the path's first segment) and outcome, which
    ``accept`` and ``retry_later`` name; any other refusal is "refused"."""
    provider = request.path.split("/")[2] if request.url_rule is not None else "unknown"
    outcome = g.get("webhook_outcome") or ("refused" if response.status_code >= 400
                                           else "accepted")
    count(lambda m: m.webhooks.labels(provider, outcome).inc())
    return response

from web.webhooks import routes  # noqa: E402,F401  (registers the routes)
