"""Parse → verdict → index: the one way a stored email becomes a verdict and a search entry.

Webhooks, ``/api/classify``, ``spamsift classify``, imports, re-scoring, ``spamsift eval`` and
the benchmarks all come through here; the Celery tasks (``workers.tasks``) only load rows and
call it.

- A verdict reads only what its model needs: a TF-IDF model reads the text; a fine-tune
  (LoRA) the first tokens of the text it was trained on; a linear encoder model one
  classification window (the first ``SPAMSIFT_CLASSIFY_WINDOW`` tokens of subject and
  body) embedded the way the model was trained (its pooling and backend).
- Indexing (every chunk of the text, for search) is apart: bulk work after the verdict.
- Idempotent: one prediction per email and model, inserted with ``ON CONFLICT DO NOTHING``;
  the email's verdict (``emails.verdict_id``) points at the active model's prediction, so
  running any step twice changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from core.config import get_settings
from core.db import after_commit
from core.mail import parse_email, text_for_model
from core.metrics import count
from core.models import REALTIME_SOURCES, Email, EmailStatus, Prediction, TrainedModel, Verdict
from core.search import SearchFilter, vector_search
from core.vectors import store_chunks
from ml.cascade import CascadePlan
from ml.classifiers import CASCADE, LINEAR, LORA, READS_TEXT
from ml.hybrid import HYBRID, combine
from ml.thresholds import Thresholds
from workers.client import send_after_commit
from workers.names import DELIVER_VERDICT
from workers.runtime import active_model_row, classifier_for, get_encoder, stage_models

# Linear models trained before classification windows read the first chunk's worth.
DEFAULT_WINDOW = 256


def is_realtime(source: str) -> bool:
    return source.split(":", 1)[0] in REALTIME_SOURCES


# -- parse -----------------------------------------------------------------------------------

def parse(email: Email) -> None:
    """Fill an email's parsed fields from its raw bytes (idempotent)."""
    parsed = parse_email(email.raw)
    email.message_id = email.message_id or parsed.message_id
    email.subject = parsed.subject
    email.sender = parsed.sender
    email.recipients = parsed.recipients
    email.sent_at = parsed.sent_at
    email.headers = parsed.headers
    email.text = parsed.text
    email.attachments = parsed.attachments
    email.defects = parsed.defects
    if email.status in (EmailStatus.RECEIVED, EmailStatus.FAILED):
        email.status = EmailStatus.PARSED
        email.status_message = None


def model_text(subject: str | None, body: str | None) -> str:
    """What every model reads of an email: subject and body (no other headers)."""
    return text_for_model(subject, body, get_settings().model_text_chars)


def model_texts(emails: Sequence[Email]) -> list[str]:
    """Model input for each email; mail no worker has parsed yet is parsed here, in memory
    (training never writes to email rows, so it never waits on the bulk workers' locks)."""
    texts = []
    for email in emails:
        if email.status == EmailStatus.RECEIVED:
            parsed = parse_email(email.raw)
            texts.append(model_text(parsed.subject, parsed.text))
        else:
            texts.append(model_text(email.subject, email.text))
    return texts


# -- verdict ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class EncoderInput:
    """How an encoder model reads mail: its pooling, window (tokens), backend, and the
    adapted encoder version it starts from (None: the encoder as shipped)."""

    pooling: str
    window: int
    backend: str
    version: int | None = None

    @classmethod
    def of(cls, model: TrainedModel) -> EncoderInput:
        params = model.params or {}
        return cls(params.get("pooling", "cls"), int(params.get("window", DEFAULT_WINDOW)),
                   params.get("backend", "torch"), params.get("encoder_version"))

    @classmethod
    def configured(cls, pooling: str | None = None, version: int | None = None
                   ) -> EncoderInput:
        settings = get_settings()
        return cls(pooling or settings.encoder_pooling, settings.classify_window,
                   settings.encoder_backend, version)

    def encoder(self):
        return get_encoder(self.backend, self.version)

    def space(self) -> str:
        """The name of the vector space these vectors live in."""
        return self.encoder().name_for(self.pooling)


def window_vectors(texts: Sequence[str], how: EncoderInput) -> np.ndarray:
    """One vector per text: its first ``how.window`` tokens."""
    return how.encoder().embed(list(texts), how.pooling, max_length=how.window)


@dataclass
class Scores:
    p_spam: np.ndarray
    reasons: list[dict]  # per text: what the model can say about its verdict
    # Encoder models: each text's window vector, for evidence (None where none was made).
    vectors: list[np.ndarray | None] | None = None


def score_texts(model: TrainedModel, texts: Sequence[str], reason_terms: int = 5) -> Scores:
    """p(spam) of each text by ``model``, reading what the model needs and nothing else;
    TF-IDF models also name the ``reason_terms`` terms that weighed most."""
    texts = list(texts)
    if model.kind == CASCADE:
        return _cascade_scores(model, texts, reason_terms)
    classifier = classifier_for(model)
    if model.kind == HYBRID:
        return _hybrid_scores(model, classifier, texts, reason_terms)
    if model.kind in READS_TEXT:
        if not reason_terms:
            return Scores(np.asarray(classifier.predict_proba(texts), dtype=float),
                          [{} for _ in texts])
        p_spam, terms = classifier.predict_with_reasons(texts, reason_terms)
        return Scores(np.asarray(p_spam, dtype=float), [{"terms": t} for t in terms])
    if model.kind == LORA:
        return Scores(np.asarray(classifier.predict_proba(texts), dtype=float),
                      [{} for _ in texts])
    if model.kind == LINEAR:
        how = EncoderInput.of(model)
        vectors = window_vectors(texts, how)
        return Scores(np.asarray(classifier.predict_proba(vectors), dtype=float),
                      [{} for _ in texts], list(vectors))
    raise ValueError(f"cannot score with a model of kind {model.kind!r}")


def _cascade_scores(model: TrainedModel, texts: list[str], reason_terms: int) -> Scores:
    """The cheap stage judges every text; the strong stage only those it is not sure of."""
    cheap_model, strong_model = stage_models(model)
    plan = CascadePlan.from_dict(model.params["plan"])
    cheap = score_texts(cheap_model, texts, reason_terms)
    sure = plan.cheap_decides(cheap.p_spam)
    p_spam = cheap.p_spam.copy()
    reasons = [{"stage": "cheap", **r} for r in cheap.reasons]
    vectors: list[np.ndarray | None] = [None] * len(texts)
    rest = np.flatnonzero(~sure)
    if len(rest):
        strong = score_texts(strong_model, [texts[i] for i in rest], reason_terms)
        for position, index in enumerate(rest):
            p_spam[index] = strong.p_spam[position]
            reasons[index] = {**reasons[index], **strong.reasons[position], "stage": "strong"}
            vectors[index] = strong.vectors[position]
    return Scores(p_spam, reasons, vectors)


def _hybrid_scores(model: TrainedModel, stacker, texts: list[str], reason_terms: int
                   ) -> Scores:
    """Both stages judge every text; the stacker weighs their scores."""
    text_model, language_model = stage_models(model)
    text = score_texts(text_model, texts, reason_terms)
    language = score_texts(language_model, texts, 0)
    p_spam = combine(stacker, text.p_spam, language.p_spam)
    reasons = [{**reason, "stages": {"text": round(float(p_text), 4),
                                     "language model": round(float(p_language), 4)}}
               for reason, p_text, p_language in zip(text.reasons, text.p_spam,
                                                     language.p_spam)]
    return Scores(np.asarray(p_spam, dtype=float), reasons, language.vectors)


def judge(session: Session, emails: list[Email], started: float | None = None,
          evidence: bool = False) -> dict[int, int]:
    """Give each email the active model's verdict; returns each email's prediction id. Mail
    still ``received`` is parsed first, also when no model is active (it waits ``parsed``).
    An email the active model has judged already keeps that prediction (a redelivered task,
    a roll back): only the email's pointer moves.
    ``evidence`` adds the nearest labeled emails to encoder verdicts (realtime mail).
    Each first verdict of realtime mail is posted to the callback URL once, after the commit.
    """
    started = started if started is not None else time.perf_counter()
    for email in emails:
        if email.status == EmailStatus.RECEIVED:
            parse(email)
    with session.no_autoflush:  # one UPDATE per email: parsed fields and verdict together
        model = active_model_row(session)
        if model is None or not emails:
            return {}
        judged = _predictions_of(session, model.id, [e.id for e in emails])
        todo = [e for e in emails if e.id not in judged]
        created: set[int] = set()
        if todo:
            inserted = _insert_predictions(session, model, todo, started, evidence)
            created = set(inserted.values())
            judged.update(inserted)
            if len(inserted) < len(todo):  # another worker judged some meanwhile
                judged = _predictions_of(session, model.id, [e.id for e in emails])
        first_verdicts = [e for e in emails
                          if e.verdict_id is None and judged[e.id] in created]
        for email in emails:
            email.verdict_id = judged[email.id]
            email.status = EmailStatus.CLASSIFIED
            email.status_message = None
    session.flush()
    if get_settings().callback_url:
        for email in first_verdicts:
            if is_realtime(email.source):
                send_after_commit(session, DELIVER_VERDICT, [judged[email.id]])
    return judged


def _insert_predictions(session: Session, model: TrainedModel, emails: list[Email],
                        started: float, evidence: bool) -> dict[int, int]:
    """Score ``emails`` and insert their predictions, skipping any (email, model) pair that
    exists by now; returns the rows inserted: email id → prediction id."""
    scores = score_texts(model, [model_text(e.subject, e.text) for e in emails])
    thresholds = Thresholds.from_dict(model.thresholds)
    k = get_settings().evidence_k if evidence else 0
    elapsed_ms = (time.perf_counter() - started) * 1000 / len(emails)
    rows = []
    for index, (email, p) in enumerate(zip(emails, scores.p_spam)):
        reasons = dict(scores.reasons[index])
        vector = scores.vectors[index] if scores.vectors is not None else None
        if vector is not None and k > 0:
            reasons["neighbors"] = nearest_labeled(session, model.encoder, vector, k, email.id)
        rows.append({"email_id": email.id, "model_id": model.id, "p_spam": float(p),
                     "verdict": Verdict(thresholds.verdict(float(p))),
                     "thresholds": thresholds.to_dict(), "evidence": reasons,
                     "latency_ms": round(elapsed_ms, 2)})
    inserted = dict(session.execute(
        insert(Prediction).values(rows)
        .on_conflict_do_nothing(index_elements=["email_id", "model_id"])
        .returning(Prediction.email_id, Prediction.id)).all())
    made = [row["verdict"].value for row in rows if row["email_id"] in inserted]
    labels = (model.kind, str(model.id))
    after_commit(session, lambda: _count_verdicts(labels, made, elapsed_ms / 1000))
    return inserted


def _count_verdicts(model_labels: tuple[str, str], verdicts: list[str],
                    seconds_each: float) -> None:
    def record(m) -> None:
        for verdict in verdicts:
            m.verdicts.labels(verdict, *model_labels).inc()
            m.classification_seconds.observe(seconds_each)

    count(record)


def _predictions_of(session: Session, model_id: int, email_ids: list[int]) -> dict[int, int]:
    return dict(session.execute(
        select(Prediction.email_id, Prediction.id)
        .where(Prediction.model_id == model_id, Prediction.email_id.in_(email_ids))).all())


def nearest_labeled(session: Session, space: str, vector: np.ndarray, k: int,
                    exclude_email_id: int) -> list[dict]:
    """The evidence of an encoder verdict: the k labeled emails nearest to the email's window,
    best first, among the indexed mail of the same vector space."""
    hits = vector_search(session, space, vector, k, SearchFilter(label="any"),
                         exclude_email_id=exclude_email_id)
    return [{"email_id": hit.email_id, "label": hit.label, "subject": hit.subject,
             "similarity": round(hit.score, 4)} for hit in hits]


# -- index -----------------------------------------------------------------------------------

def index(session: Session, emails: list[Email]) -> int:
    """Make ``emails`` searchable by meaning: chunk the whole text, embed every chunk, store
    them; returns how many were indexed. The slow part runs without holding any row, and the
    write locks the emails only briefly, so labels and verdicts are never kept waiting."""
    encoder = get_encoder()
    space = encoder.name
    todo = [e for e in emails if e.indexed_with != space and e.status != EmailStatus.RECEIVED]
    if not todo:
        return 0
    owners, chunks = [], []
    for email in todo:
        for chunk in encoder.chunk(model_text(email.subject, email.text)):
            owners.append(email.id)
            chunks.append(chunk)
    vectors = encoder.embed([chunk.text for chunk in chunks])
    ids = [e.id for e in todo]
    # Two index runs over the same emails take turns here; the second replaces the first.
    session.execute(text("SELECT id FROM emails WHERE id = ANY(:ids) ORDER BY id FOR UPDATE"),
                    {"ids": ids})
    store_chunks(session, space, [
        (owner, c.ordinal, c.text, c.char_start, c.char_end, vector)
        for owner, c, vector in zip(owners, chunks, vectors)])
    session.execute(update(Email).where(Email.id.in_(ids)).values(indexed_with=space)
                    .execution_options(synchronize_session=False))
    return len(todo)
