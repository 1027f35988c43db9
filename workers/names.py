"""Queues and task names: the web app and the CLI enqueue by name and never import the
task modules (``workers.client`` sends them)."""

from __future__ import annotations

# Queues by purpose; each can be given its own workers.
REALTIME = "realtime"  # webhook verdicts, query embeddings
BULK = "bulk"  # imported mail's verdicts, search indexing, re-scoring
TRAINING = "training"  # model fits
QUEUES = (REALTIME, BULK, TRAINING)

CLASSIFY_EMAIL = "spamsift.classify_email"  # one delivered email (and any arriving with it)
CLASSIFY_EMAILS = "spamsift.classify_emails"  # a batch of imported mail
INDEX_EMAILS = "spamsift.index_emails"  # chunks and vectors for search
RESCORE = "spamsift.rescore"  # the active model judges mail another model judged
TRAIN_MODEL = "spamsift.train_model"
IMPORT_UPLOAD = "spamsift.import_upload"
DELIVER_VERDICT = "spamsift.deliver_verdict"
EMBED_QUERY = "spamsift.embed_query"
ANSWER_QUESTION = "spamsift.answer_question"
RECONCILE = "spamsift.reconcile"

TASK_ROUTES = {
    CLASSIFY_EMAIL: {"queue": REALTIME},
    CLASSIFY_EMAILS: {"queue": BULK},
    INDEX_EMAILS: {"queue": BULK},
    RESCORE: {"queue": BULK},
    TRAIN_MODEL: {"queue": TRAINING},
    IMPORT_UPLOAD: {"queue": BULK},
    DELIVER_VERDICT: {"queue": REALTIME},
    EMBED_QUERY: {"queue": REALTIME},
    ANSWER_QUESTION: {"queue": REALTIME},
    RECONCILE: {"queue": BULK},
}
