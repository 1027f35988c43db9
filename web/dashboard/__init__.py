"""Server-rendered dashboard pages."""

from flask import Blueprint

blueprint = Blueprint("dashboard", __name__, template_folder="../templates")

from web.dashboard import views  # noqa: E402,F401  (registers the pages)
