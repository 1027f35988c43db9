"""gunicorn's access log, with the secrets some webhook URLs carry replaced by ``***``.

SendGrid (with signing off) and Mailgun (as a second factor) can authenticate by a secret
path segment: ``/webhooks/sendgrid/<secret>``, ``/webhooks/mailgun/<secret>[/mime]``.
"""

from __future__ import annotations

import re

from gunicorn.glogging import Logger

_SECRET_SEGMENT = re.compile(r"(/webhooks/(?:sendgrid|mailgun)/)(?!mime(?:[/?\s]|$))[^/?\s]+")
# Atoms that hold the request path: the request line, the path, and their environ copies.
_PATH_ATOMS = ("r", "U", "{raw_uri}e", "{path_info}e", "{request_uri}e")


def redact(text: str) -> str:
    return _SECRET_SEGMENT.sub(r"\1***", text)


class RedactingLogger(Logger):
    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for name in _PATH_ATOMS:
            if isinstance(atoms.get(name), str):
                atoms[name] = redact(atoms[name])
        return atoms
