"""Inbound webhooks: raw MIME, Mailgun, SendGrid Inbound Parse and Postmark.

Each endpoint authenticates the way its provider signs, turns the post into raw RFC 822
bytes, and hands them to ``accept``, which stores, enqueues and answers in the status codes
that provider understands.
"""

from flask import Blueprint

from core.config import get_settings
from web.extensions import limiter

blueprint = Blueprint("webhooks", __name__, url_prefix="/webhooks")
# Once, here: a limit added in create_app would count each request once per app made.
limiter.limit(lambda: get_settings().webhook_rate_limit)(blueprint)

from web.webhooks import routes  # noqa: E402,F401  (registers the routes)
