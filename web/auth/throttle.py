"""Login attempts, limited per client address and per username in Redis; fails closed.

Every login post counts against its address (``SPAMSIFT_LOGIN_RATE_LIMIT``); failed ones
also count against the username (``SPAMSIFT_LOGIN_USERNAME_RATE_LIMIT``), so guessing one
user's password from many addresses is slow too. Unlike the webhook limits, which let mail
through when Redis is down, a login that cannot be counted is refused.
"""

from __future__ import annotations

import logging

from flask import request
from limits import RateLimitItem, parse

from core.config import SettingError, get_settings
from web.extensions import limiter

log = logging.getLogger(__name__)


class ThrottleUnavailable(RuntimeError):
    """The counters (Redis) cannot be reached."""


def login_limits() -> tuple[RateLimitItem, RateLimitItem]:
    """The per-address and per-username limits; a SettingError names a malformed one."""
    settings = get_settings()
    limits = []
    for name, value in (("LOGIN_RATE_LIMIT", settings.login_rate_limit),
                        ("LOGIN_USERNAME_RATE_LIMIT", settings.login_username_rate_limit)):
        try:
            limits.append(parse(value))
        except ValueError:
            raise SettingError(f"SPAMSIFT_{name} must read like '10 per minute', "
                               f"got {value!r}") from None
    return limits[0], limits[1]


def _username_key(username: str) -> str:
    return username.strip().lower()[:150]


def allow_attempt(username: str) -> bool:
    """Count a login post; False when its address or username is over its limit."""
    per_address, per_username = login_limits()
    try:
        if not limiter.limiter.hit(per_address, "login-address", request.remote_addr or ""):
            return False
        return limiter.limiter.test(per_username, "login-username", _username_key(username))
    except Exception as exc:  # whatever the storage raises: refuse rather than let through
        log.warning("login refused: rate-limit storage unreachable: %s", exc)
        raise ThrottleUnavailable(str(exc)) from exc


def record_failure(username: str) -> None:
    _, per_username = login_limits()
    try:
        limiter.limiter.hit(per_username, "login-username", _username_key(username))
    except Exception as exc:
        log.warning("failed login not counted: rate-limit storage unreachable: %s", exc)
