"""The key that signs session cookies: checked before the web app serves, and made once for
``spamsift run`` (``make run``) when ``SPAMSIFT_SECRET_KEY`` is not set.

Anyone who knows the key can sign a session cookie for any user, so a public or guessable
key is refused unless ``SPAMSIFT_DEVELOPMENT`` says this is a development machine.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from core.config import Settings, SettingError

MIN_SECRET_KEY_BYTES = 32
# Used only with SPAMSIFT_DEVELOPMENT=true and no key set: public, so never for production.
DEVELOPMENT_SECRET_KEY = "dev-only-secret-change-me"
SECRET_KEY_FILE = "secret_key"


def flask_secret_key(settings: Settings) -> str:
    """The key to sign cookies with; a ``SettingError`` naming the fix when it is unsafe."""
    key = settings.secret_key
    if settings.development:
        return key or DEVELOPMENT_SECRET_KEY
    if len(key.encode()) < MIN_SECRET_KEY_BYTES:
        problem = "is not set" if not key else f"is shorter than {MIN_SECRET_KEY_BYTES} bytes"
        raise SettingError(
            f"SPAMSIFT_SECRET_KEY {problem}: anyone could sign a session cookie. Set it to a "
            "random value, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
            " (or SPAMSIFT_DEVELOPMENT=true on a development machine)")
    return key


def ensure_secret_key_file(var_dir: Path) -> str:
    """The key kept in ``var_dir/secret_key`` (mode 0600), made at random on first use."""
    path = var_dir / SECRET_KEY_FILE
    var_dir.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: two processes starting at once cannot both write a key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(48) + "\n")
    return path.read_text().strip()
