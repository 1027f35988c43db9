"""gunicorn's logs in spamsift's format (``core.logs``): one structured line per request, with
its request id, and the secrets some webhook URLs carry replaced by ``***``.

SendGrid (with signing off) and Mailgun (as a second factor) can authenticate by a secret
path segment: ``/webhooks/sendgrid/<secret>``, ``/webhooks/mailgun/<secret>[/mime]``. Query
strings are not logged.
"""

from __future__ import annotations

import re
import traceback

from gunicorn.glogging import Logger

from core import logs
from core.config import get_settings

_SECRET_SEGMENT = re.compile(r"(/webhooks/(?:sendgrid|mailgun)/)(?!mime(?:[/?\s]|$))[^/?\s]+")


def redact(text: str) -> str:
    return _SECRET_SEGMENT.sub(r"\1***", text)


class RedactingLogger(Logger):
    def setup(self, cfg) -> None:
        super().setup(cfg)
        settings = get_settings()
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(logs.formatter(settings.log_format))

    def access(self, resp, req, environ, request_time) -> None:
        if not self.access_log_enabled:
            return
        request_id = next((value for name, value in resp.headers
                           if name.lower() == logs.REQUEST_ID_HEADER.lower()), None)
        try:
            self.access_log.info("request", extra={
                "method": req.method, "path": redact(req.path),
                "status": int(str(resp.status).split()[0]),
                "ms": round(request_time.total_seconds() * 1000, 1),
                "bytes": getattr(resp, "sent", None), "client": environ.get("REMOTE_ADDR"),
                "request_id": request_id})
        except Exception:
            self.error(traceback.format_exc())
