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


LONG_SECRET = "s" * 32


@pytest.mark.parametrize("url", [
    "https://hooks.example.org/verdicts", "http://127.0.0.1:8080/v", "http://127.3.4.5/v",
    "http://localhost:9000/v", "http://[::1]:9000/v", "HTTPS://Hooks.Example.org/v"])
def test_outgoing_urls_that_are_allowed(monkeypatch, url):
    monkeypatch.setenv("SPAMSIFT_CALLBACK_URL", url)
    monkeypatch.setenv("SPAMSIFT_CALLBACK_SECRET", LONG_SECRET)
    monkeypatch.setenv("SPAMSIFT_LLM_URL", url)
    settings = load_settings()
    assert settings.callback_url == url and settings.llm_url == url


@pytest.mark.parametrize("name", ["CALLBACK_URL", "LLM_URL"])
@pytest.mark.parametrize("url", ["http://hooks.example.org/v", "http://10.0.0.5:11434/v1",
                                 "http://localhost.evil.example/v", "ftp://127.0.0.1/v",
                                 "https:///no-host", "hooks.example.org/v",
                                 "http://[::1/v"])
def test_plain_http_and_odd_urls_are_refused(monkeypatch, name, url):
    monkeypatch.setenv("SPAMSIFT_CALLBACK_SECRET", LONG_SECRET)
    monkeypatch.setenv("SPAMSIFT_" + name, url)
    with pytest.raises(SettingError, match=f"SPAMSIFT_{name} must be an https URL"):
        load_settings()


def test_plain_http_to_any_host_with_the_development_flag(monkeypatch):
    monkeypatch.setenv("SPAMSIFT_ALLOW_HTTP_OUTBOUND", "true")
    monkeypatch.setenv("SPAMSIFT_CALLBACK_URL", "http://hooks.example.org/v")
    monkeypatch.setenv("SPAMSIFT_CALLBACK_SECRET", LONG_SECRET)
    monkeypatch.setenv("SPAMSIFT_LLM_URL", "http://10.0.0.5:11434/v1")
    assert load_settings().allow_http_outbound
    monkeypatch.setenv("SPAMSIFT_LLM_URL", "ftp://10.0.0.5/v1")
    with pytest.raises(SettingError, match="SPAMSIFT_LLM_URL"):
        load_settings()


@pytest.mark.parametrize("secret", [None, "", "short-secret", "x" * 31, "é" * 15])
def test_a_callback_needs_a_secret_of_32_bytes(monkeypatch, secret):
    monkeypatch.setenv("SPAMSIFT_CALLBACK_URL", "https://hooks.example.org/verdicts")
    if secret is None:
        monkeypatch.delenv("SPAMSIFT_CALLBACK_SECRET", raising=False)
    else:
        monkeypatch.setenv("SPAMSIFT_CALLBACK_SECRET", secret)
    with pytest.raises(SettingError, match="SPAMSIFT_CALLBACK_SECRET must be at least 32 bytes"):
        load_settings()
    monkeypatch.setenv("SPAMSIFT_CALLBACK_SECRET", "é" * 16)  # 32 bytes in UTF-8
    assert load_settings().callback_secret == "é" * 16
    monkeypatch.delenv("SPAMSIFT_CALLBACK_URL")
    monkeypatch.delenv("SPAMSIFT_CALLBACK_SECRET")
    assert load_settings().callback_url == ""  # no callback, no secret needed


def test_search_depth_has_a_cap(monkeypatch):
    monkeypatch.delenv("SPAMSIFT_SEARCH_MAX_RESULTS", raising=False)
    assert load_settings().search_max_results == 200
    monkeypatch.setenv("SPAMSIFT_SEARCH_MAX_RESULTS", "0")
    with pytest.raises(SettingError, match="SPAMSIFT_SEARCH_MAX_RESULTS must be at least 1"):
        load_settings()


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


@pytest.mark.parametrize("name,value", [("HOLDOUT_SHARE", "0"), ("HOLDOUT_SHARE", "0.9"),
                                        ("RETRAIN_TOLERANCE", "-0.1")])
def test_retraining_settings_have_bounds(monkeypatch, name, value):
    monkeypatch.setenv("SPAMSIFT_" + name, value)
    with pytest.raises(SettingError, match=f"SPAMSIFT_{name} must be"):
        load_settings()
