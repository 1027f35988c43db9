"""Provider authentication: Mailgun HMAC, SendGrid ECDSA, HTTP basic auth, bearer tokens,
and the replay memory (seen tokens, kept in Redis)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from core import services
from core.auth import constant_time_equal

log = logging.getLogger(__name__)
REPLAY_PREFIX = "spamsift:webhook-seen:"


def mailgun_signature_valid(signing_key: str, timestamp: str, token: str,
                            signature: str) -> bool:
    expected = hmac.new(signing_key.encode(), (timestamp + token).encode(),
                        hashlib.sha256).hexdigest()
    return constant_time_equal(expected, signature.lower())


def timestamp_fresh(timestamp: str, window_seconds: int) -> bool:
    try:
        return abs(time.time() - float(timestamp)) <= window_seconds
    except ValueError:
        return False


def sendgrid_signature_valid(public_key_b64: str, timestamp: str, payload: bytes,
                             signature_b64: str) -> bool:
    """ECDSA P-256 / SHA-256 over timestamp + raw body; key and signature base64 DER."""
    try:
        key = serialization.load_der_public_key(base64.b64decode(public_key_b64))
        if not isinstance(key, ec.EllipticCurvePublicKey):
            return False
        key.verify(base64.b64decode(signature_b64), timestamp.encode() + payload,
                   ec.ECDSA(hashes.SHA256()))
        return True
    except (InvalidSignature, ValueError, TypeError):
        return False


def basic_auth_valid(authorization, username: str, password: str) -> bool:
    if authorization is None or authorization.type != "basic":
        return False
    return (constant_time_equal(authorization.username or "", username)
            & constant_time_equal(authorization.password or "", password))


def seen_before(kind: str, token: str) -> bool:
    """Whether this token was already used; Redis being down must not lose mail, so then
    the check passes (the signature and timestamp checks still hold)."""
    try:
        return bool(services.redis_client().exists(REPLAY_PREFIX + kind + ":" + token))
    except Exception as exc:  # redis-py raises several connection errors
        log.warning("replay check skipped, Redis unavailable: %s", exc)
        return False


def remember(kind: str, token: str, window_seconds: int) -> None:
    try:
        services.redis_client().set(REPLAY_PREFIX + kind + ":" + token, 1,
                                    ex=2 * window_seconds)
    except Exception as exc:
        log.warning("replay token not remembered, Redis unavailable: %s", exc)
