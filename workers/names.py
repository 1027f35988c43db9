"""Queues and task names: the web app and the CLI enqueue by name and never import the
task modules (``workers.client`` sends them)."""

from __future__ import annotations

from ml.lora_settings import LORA

# Queues by purpose; each can be given its own workers.
REALTIME = "realtime"  # webhook verdicts, query embeddings
BULK = "bulk"  # imported mail's verdicts, search indexing, re-scoring
TRAINING = "training"  # model fits, encoder adaptation
QUEUES = (REALTIME, BULK, TRAINING)

CLASSIFY_EMAIL = "spamsift.classify_email"  # one delivered email (and any arriving with it)
CLASSIFY_EMAILS = "spamsift.classify_emails"  # a batch of imported mail
INDEX_EMAILS = "spamsift.index_emails"  # chunks and vectors for search
RESCORE = "spamsift.rescore"  # the active model judges mail another model judged
TRAIN_MODEL = "spamsift.train_model"
ADAPT_ENCODER = "spamsift.adapt_encoder"  # masked-LM adaptation to the stored mail
SELF_TRAIN = "spamsift.self_train"  # pseudo-labels on unlabeled mail, rounds of training
IMPORT_UPLOAD = "spamsift.import_upload"
DELIVER_VERDICT = "spamsift.deliver_verdict"
EMBED_QUERY = "spamsift.embed_query"
ANSWER_QUESTION = "spamsift.answer_question"
RECONCILE = "spamsift.reconcile"
# Scheduled jobs (workers.schedule declares when each runs).
RETRAIN = "spamsift.retrain"  # train on new labels; activate if the holdout says so
REINDEX = "spamsift.reindex"  # vectors for mail that lacks them in the configured space
CHECK_DRIFT = "spamsift.check_drift"  # has recent mail's score distribution moved?
REFIT_THRESHOLDS = "spamsift.refit_thresholds"  # thresholds re-fitted on recent mail
SCHEDULED_SELF_TRAINING = "spamsift.scheduled_self_training"  # queues a self-training job
SCHEDULED_ADAPTATION = "spamsift.scheduled_adaptation"  # queues a masked-LM adaptation job
PURGE_RAW = "spamsift.purge_raw"  # raw messages past the retention period

# Within a queue, lower numbers go first (Redis transport: 0 is the highest priority, and a
# message without one counts as 0). Search indexing never delays a verdict, not even the
# verdicts of a bulk import; re-scoring mail already judged waits for new mail's verdicts.
PRIORITY_STEPS = [0, 3, 6, 9]
RESCORE_PRIORITY = 6
INDEX_PRIORITY = 9

# The model kinds ``spamsift train``, the API and the dashboard offer (ml.classifiers.KINDS,
# named here so the web app need not import the training stack).
MODEL_KINDS = ("tfidf-nb", "tfidf-lr", "linear", "cascade", LORA, "hybrid")

TASK_ROUTES = {
    CLASSIFY_EMAIL: {"queue": REALTIME},
    CLASSIFY_EMAILS: {"queue": BULK},
    INDEX_EMAILS: {"queue": BULK, "priority": INDEX_PRIORITY},
    RESCORE: {"queue": BULK, "priority": RESCORE_PRIORITY},
    TRAIN_MODEL: {"queue": TRAINING},
    ADAPT_ENCODER: {"queue": TRAINING},
    SELF_TRAIN: {"queue": TRAINING},
    IMPORT_UPLOAD: {"queue": BULK},
    DELIVER_VERDICT: {"queue": REALTIME},
    EMBED_QUERY: {"queue": REALTIME},
    ANSWER_QUESTION: {"queue": REALTIME},
    RECONCILE: {"queue": BULK},
    RETRAIN: {"queue": BULK},
    REINDEX: {"queue": BULK, "priority": INDEX_PRIORITY},
    CHECK_DRIFT: {"queue": BULK},
    REFIT_THRESHOLDS: {"queue": BULK},
    SCHEDULED_SELF_TRAINING: {"queue": BULK},
    SCHEDULED_ADAPTATION: {"queue": BULK},
    PURGE_RAW: {"queue": BULK, "priority": INDEX_PRIORITY},
}


def queue_lists(queue: str, before: int | None = None) -> list[str]:
    """The Redis lists that hold a queue's messages, one per priority step (kombu's names);
    with ``before``, only the lists of the messages taken before that priority."""
    return [queue if step == 0 else f"{queue}\x06\x16{step}" for step in PRIORITY_STEPS
            if before is None or step < before]
