"""``GET /metrics``: Prometheus's text format, for a scraper on this machine or one with a
read-scoped token (as ``/healthz/details``); and the count and time of every request.

What every process of the host wrote (``core.metrics``), plus gauges read at scrape time:
messages waiting on each queue, and the model in use.
"""

from __future__ import annotations

import time

from flask import Blueprint, Flask, Response, g, request

from core.metrics import count, exposition
from web.health import local_or_read_scope

blueprint = Blueprint("metrics", __name__)


class DeploymentGauges:
    """A collector of what the deployment looks like now: queue depths, the active model."""

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily
        from redis.exceptions import RedisError
        from sqlalchemy.exc import DBAPIError

        from core.db import session_scope
        from core.registry import active_model
        from workers.client import waiting_messages
        from workers.names import QUEUES

        depth = GaugeMetricFamily("spamsift_queue_messages", "Messages waiting on each queue",
                                  labels=["queue"])
        try:
            for queue in QUEUES:
                depth.add_metric([queue], waiting_messages(queue))
        except RedisError:
            pass  # the broker is down: no depth rather than a failed scrape
        yield depth
        model = GaugeMetricFamily("spamsift_active_model", "The model in use (1), by id and "
                                  "kind", labels=["model_id", "kind"])
        try:
            with session_scope() as session:
                active = active_model(session)
                if active is not None:
                    model.add_metric([str(active.id), active.kind], 1)
        except DBAPIError:
            pass
        yield model


@blueprint.get("/metrics")
def scrape():
    refused = local_or_read_scope()
    if refused is not None:
        return refused
    body, content_type = exposition(DeploymentGauges())
    return Response(body, content_type=content_type)


def count_requests(app: Flask) -> None:
    """Count and time every request by its URL rule (never the raw path: one series per
    route, whatever the ids in it)."""

    @app.before_request
    def started():
        g.request_started = time.perf_counter()

    @app.after_request
    def counted(response):
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        seconds = time.perf_counter() - g.request_started if "request_started" in g else None

        def record(m) -> None:
            m.requests.labels(route, request.method, str(response.status_code)).inc()
            if seconds is not None:
                m.request_seconds.labels(route).observe(seconds)

        count(record)
        return response
