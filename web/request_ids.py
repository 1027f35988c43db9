"""Each request's id: taken from ``X-Request-ID`` when the client (or a proxy) gives an
acceptable one, else made; bound for every log line written while it runs and every task it
sends (``core.logs``), and returned in the response's ``X-Request-ID``."""

from __future__ import annotations

from flask import Flask, request

from core import logs


def track_request_ids(app: Flask) -> None:
    @app.before_request
    def begin():
        logs.start_request(request.headers.get(logs.REQUEST_ID_HEADER))

    @app.after_request
    def tell(response):
        request_id = logs.current_request_id()
        if request_id:
            response.headers[logs.REQUEST_ID_HEADER] = request_id
        return response

    @app.teardown_request
    def end(_error):
        logs.end_request()
