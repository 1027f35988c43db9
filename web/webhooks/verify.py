"""Provider authentication: Mailgun HMAC, SendGrid ECDSA, HTTP basic auth, bearer tokens,
and the replay memory (seen tokens, kept in Redis)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
from dataclasses import dataclass

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


class ReplayMemoryUnavailable(RuntimeError):
    """Redis cannot say whether a signed delivery was seen: refuse it, the provider retries."""


@dataclass(frozen=True)
class Claim:
    """A signed delivery's one use, held in Redis from before the email is stored."""

    key: str

    def release(self) -> None:
        """Give the claim back when the delivery was not stored, so its retry can pass."""
        try:
            services.redis_client().delete(self.key)
        except Exception as exc:  # the claim then expires on its own
            log.warning("replay claim %s not released, Redis unavailable: %s", self.key, exc)


def claim_once(kind: str, signed: str | bytes, window_seconds: int) -> Claim | None:
    """Claim a signed delivery atomically (SET NX EX); None when it was used before.

    ``signed`` is what the signature covers, so a re-encoded copy of the same signature
    cannot pass as a new delivery. Fails closed: without Redis there is no claim, and the
    caller answers 503 so the provider retries.
    """
    signed = signed.encode() if isinstance(signed, str) else signed
    key = REPLAY_PREFIX + kind + ":" + hashlib.sha256(signed).hexdigest()
    try:
        claimed = services.redis_client().set(key, 1, nx=True, ex=2 * window_seconds)
    except Exception as exc:  # redis-py raises several connection errors
        raise ReplayMemoryUnavailable(f"replay memory unavailable: {exc}") from exc
    return Claim(key) if claimed else None
