from __future__ import annotations

import pytest

from core.config import SettingError, env_bool, env_int, load_settings


def test_defaults_are_safe_for_local_use(monkeypatch):
    for name in ("DATABASE_URL", "BROKER_URL", "MAX_MESSAGE_BYTES", "VAR_DIR"):
        monkeypatch.delenv("SPAMSIFT_" + name, raising=False)
    settings = load_settings()
    assert settings.database_url == "" and settings.broker_url == ""  # embedded services
    assert settings.max_message_bytes == 30 * 1024 * 1024
    assert settings.var_dir.name == "var"


def test_typed_values(monkeypatch):
    monkeypatch.setenv("SPAMSIFT_MAX_MESSAGE_BYTES", "1_000_000")
    monkeypatch.setenv("SPAMSIFT_FLAG", "yes")
    assert load_settings().max_message_bytes == 1_000_000
    assert env_bool("FLAG", False) is True


@pytest.mark.parametrize("value,message", [("lots", "must be an integer"),
                                           ("10", "must be at least 1024")])
def test_bad_values_are_named_clearly(monkeypatch, value, message):
    monkeypatch.setenv("SPAMSIFT_MAX_MESSAGE_BYTES", value)
    with pytest.raises(SettingError, match=f"SPAMSIFT_MAX_MESSAGE_BYTES {message}"):
        load_settings()


def test_bad_boolean(monkeypatch):
    monkeypatch.setenv("SPAMSIFT_X", "maybe")
    with pytest.raises(SettingError):
        env_bool("X", True)
    assert env_int("UNSET_NUMBER", 7) == 7


def test_security_defaults_are_for_production(monkeypatch):
    for name in ("DEVELOPMENT", "SECRET_KEY", "SECURE_COOKIES", "HSTS_SECONDS",
                 "SESSION_HOURS", "TRUSTED_PROXIES"):
        monkeypatch.delenv("SPAMSIFT_" + name, raising=False)
    settings = load_settings()
    assert settings.secret_key == ""  # no public default: the web app refuses to start
    assert settings.secure_cookies is True and settings.hsts_seconds >= 365 * 24 * 3600
    assert settings.session_hours == 12 and settings.trusted_proxies == 0
    monkeypatch.setenv("SPAMSIFT_DEVELOPMENT", "true")
    development = load_settings()
    assert development.secure_cookies is False and development.hsts_seconds == 0
    monkeypatch.setenv("SPAMSIFT_SECURE_COOKIES", "true")
    assert load_settings().secure_cookies is True
