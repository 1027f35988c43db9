"""Inbound webhooks: raw MIME, Mailgun, SendGrid Inbound Parse and Postmark.

Each endpoint authenticates the way its provider signs, turns the post into raw RFC 822
bytes, and hands them to ``accept``, which stores, enqueues and answers in the status codes
that provider understands.
"""

from flask import Blueprint

blueprint = Blueprint("webhooks", __name__, url_prefix="/webhooks")

from web.webhooks import routes  # noqa: E402,F401  (registers the routes)
