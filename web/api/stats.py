"""/api/stats: mail volume and spam rate by day."""

from __future__ import annotations

from flask_smorest import Blueprint

from core.db import session_scope
from core.mailbox import daily_volume
from web.api.schemas import DayStats, StatsQuery
from web.auth import api_auth

blueprint = Blueprint("api_stats", __name__, description="Volume and spam rate")


@blueprint.route("/stats")
@api_auth()
@blueprint.arguments(StatsQuery, location="query")
@blueprint.response(200, DayStats(many=True))
@blueprint.doc(security=[{"bearerAuth": []}])
def stats(query):
    """Per day: emails received and their latest verdicts."""
    with session_scope() as session:
        return daily_volume(session, query["days"])
