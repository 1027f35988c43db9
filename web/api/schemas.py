"""Request and response schemas of the REST API (marshmallow, documented by flask-smorest)."""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from core.config import get_settings
from core.search import MODES
from workers.names import MODEL_KINDS

LABELS = ("spam", "ham")
HIGHLIGHTED = "words of the query found by keyword search are marked [[like this]]"
VERDICTS = ("spam", "unsure", "ham")
STATUSES = ("received", "parsed", "embedded", "classified", "failed")


class EmailQuery(Schema):
    label = fields.String(validate=validate.OneOf(LABELS + ("none",)))
    verdict = fields.String(validate=validate.OneOf(VERDICTS))
    status = fields.String(validate=validate.OneOf(STATUSES))
    sender = fields.String(validate=validate.Length(max=320))
    since = fields.DateTime()
    until = fields.DateTime()
    q = fields.String(validate=validate.Length(max=500), metadata={"description": "words"})
    page = fields.Integer(load_default=1, validate=validate.Range(min=1))
    per_page = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))


class PredictionSchema(Schema):
    id = fields.Integer()
    model_id = fields.Integer()
    p_spam = fields.Float()
    verdict = fields.Function(lambda p: p.verdict.value)
    thresholds = fields.Dict()
    evidence = fields.Dict()
    latency_ms = fields.Float()
    created_at = fields.DateTime()


class EmailSummary(Schema):
    id = fields.Integer()
    subject = fields.String(allow_none=True)
    sender = fields.String(allow_none=True)
    received_at = fields.DateTime()
    status = fields.Function(lambda e: e.status.value)
    label = fields.Function(lambda e: e.label.value if e.label else None)
    size = fields.Integer()
    source = fields.String()


class EmailListItem(Schema):
    email = fields.Nested(EmailSummary)
    prediction = fields.Nested(PredictionSchema, allow_none=True)


class EmailPage(Schema):
    items = fields.List(fields.Nested(EmailListItem))
    total = fields.Integer()
    page = fields.Integer()
    per_page = fields.Integer()


class EmailDetail(EmailSummary):
    message_id = fields.String(allow_none=True)
    recipients = fields.List(fields.String(), allow_none=True)
    sent_at = fields.DateTime(allow_none=True)
    headers = fields.List(fields.List(fields.String()), allow_none=True)
    text = fields.String(allow_none=True)
    attachments = fields.List(fields.Dict(), allow_none=True)
    defects = fields.List(fields.String(), allow_none=True)
    label_source = fields.String(allow_none=True)
    labeled_at = fields.DateTime(allow_none=True)


class EmailWithPrediction(Schema):
    email = fields.Nested(EmailDetail)
    prediction = fields.Nested(PredictionSchema, allow_none=True)


class ReviewQuery(Schema):
    k = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))


class ReviewItemSchema(EmailListItem):
    uncertainty = fields.Float(metadata={
        "description": "distance of p(spam) from the spam threshold in log-odds (0: on it)"})


class ReviewPage(Schema):
    items = fields.List(fields.Nested(ReviewItemSchema))


class LabelRequest(Schema):
    label = fields.String(required=True, validate=validate.OneOf(LABELS))


class FeedbackSchema(Schema):
    email_id = fields.Integer()
    label = fields.String()
    changed = fields.Boolean()


class ModelSchema(Schema):
    id = fields.Integer()
    kind = fields.String()
    encoder = fields.String(allow_none=True)
    is_active = fields.Boolean()
    train_size = fields.Integer()
    params = fields.Dict()
    metrics = fields.Dict()
    thresholds = fields.Dict()
    confusion = fields.Dict()
    created_at = fields.DateTime()
    activated_at = fields.DateTime(allow_none=True)


class ModelDetail(ModelSchema):
    curves = fields.Dict()


class LoraOptions(Schema):
    """Options of a LoRA fine-tune (kind "lora"); ranges are checked when the job is
    queued, and any option left out takes its default."""

    r = fields.Integer(metadata={"description": "rank of the adapters"})
    alpha = fields.Integer()
    dropout = fields.Float()
    target = fields.List(fields.String(), metadata={"description": "modules to adapt"})
    epochs = fields.Integer()
    lr = fields.Float(metadata={"description": "peak learning rate"})
    max_length = fields.Integer(metadata={"description": "tokens of each email read"})
    batch_size = fields.Integer()
    max_steps = fields.Integer(metadata={"description": "0: the epochs decide"})


class TrainRequest(Schema):
    kind = fields.String(required=True, validate=validate.OneOf(
        MODEL_KINDS))
    pooling = fields.String(validate=validate.OneOf(("cls", "mean")))
    activate = fields.Boolean(load_default=True)
    options = fields.Nested(LoraOptions, load_default=dict)


class JobSchema(Schema):
    id = fields.Integer()
    kind = fields.String()
    state = fields.Function(lambda j: j.state.value)
    done = fields.Integer()
    total = fields.Integer(allow_none=True)
    message = fields.String(allow_none=True)
    params = fields.Dict()
    result = fields.Dict()
    created_at = fields.DateTime()
    started_at = fields.DateTime(allow_none=True)
    finished_at = fields.DateTime(allow_none=True)


class JobQuery(Schema):
    state = fields.String(validate=validate.OneOf(
        ("queued", "running", "succeeded", "failed", "cancelled")))
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))


class DayStats(Schema):
    day = fields.String()
    emails = fields.Integer()
    spam = fields.Integer()
    unsure = fields.Integer()
    ham = fields.Integer()
    spam_rate = fields.Float(allow_none=True)


class StatsQuery(Schema):
    days = fields.Integer(load_default=30, validate=validate.Range(min=1, max=3650))


class ClassifyQuery(Schema):
    wait = fields.Integer(load_default=10_000, validate=validate.Range(min=0, max=60_000))


class ClassifyResult(Schema):
    """``core.verdicts.verdict_view`` once classified; only the first three before."""

    id = fields.Integer()
    duplicate = fields.Boolean()
    status = fields.String(metadata={"description": "accepted, or classified"})
    verdict = fields.String(metadata={"description": "spam, unsure or ham"})
    p_spam = fields.Float()
    spam_score = fields.Float(metadata={"description": "p_spam rounded to 4 places"})
    spam_flag = fields.Boolean()
    thresholds = fields.Dict(metadata={"description": "spam at or above `spam`, ham below "
                                                      "`ham`, unsure between"})
    model_id = fields.Integer()
    reasons = fields.Dict(metadata={"description": "what the model can say: `terms` (TF-IDF "
                                                   "models: the terms that moved the score "
                                                   "most), `neighbors` (encoder models: the "
                                                   "nearest labeled emails)"})
    latency_ms = fields.Float()
    classified_at = fields.String()


class SearchQuery(Schema):
    q = fields.String(required=True, validate=validate.Length(min=1, max=1000))
    mode = fields.String(load_default="hybrid", validate=validate.OneOf(MODES))
    k = fields.Integer(load_default=10, validate=validate.Range(min=1, max=100))
    page = fields.Integer(load_default=1, validate=validate.Range(min=1), metadata={
        "description": "page × k may not pass SPAMSIFT_SEARCH_MAX_RESULTS (200 by default)"})
    label = fields.String(validate=validate.OneOf(("spam", "ham", "none")))
    verdict = fields.String(validate=validate.OneOf(("spam", "unsure", "ham")))
    sender = fields.String(validate=validate.Length(max=320))
    since = fields.DateTime()
    until = fields.DateTime()

    @validates_schema
    def within_reach(self, data, **_):
        deepest, cap = data["page"] * data["k"], get_settings().search_max_results
        if deepest > cap:
            raise ValidationError(
                f"page {data['page']} of {data['k']} hits reaches result {deepest}; searches "
                f"stop at {cap} (SPAMSIFT_SEARCH_MAX_RESULTS): narrow the query instead",
                field_name="k")


class HitSchema(Schema):
    email_id = fields.Integer()
    score = fields.Float()
    subject = fields.String(allow_none=True)
    sender = fields.String(allow_none=True)
    label = fields.String(allow_none=True)
    received_at = fields.DateTime(allow_none=True)
    snippet = fields.String(allow_none=True, metadata={"description": HIGHLIGHTED})
    chunk_text = fields.String(allow_none=True)
    ranks = fields.Dict()


class AskRequest(Schema):
    question = fields.String(required=True, validate=validate.Length(min=3, max=1000))
    label = fields.String(validate=validate.OneOf(("spam", "ham", "none")))
    sender = fields.String(validate=validate.Length(max=320))
    include_spam = fields.Boolean(load_default=False, metadata={
        "description": "also retrieve spam (labeled spam, or unlabeled with a spam verdict); "
                       "left out by default so that mail from outside cannot steer answers"})

    @validates_schema
    def spam_only_when_included(self, data, **_):
        if data.get("label") == "spam" and not data["include_spam"]:
            raise ValidationError("label=spam needs include_spam=true", field_name="label")


class PassageSchema(Schema):
    number = fields.Integer()
    email_id = fields.Integer()
    subject = fields.String()
    text = fields.String(metadata={"description": HIGHLIGHTED})
    label = fields.String(allow_none=True, metadata={"description": "spam, ham or null"})
    verdict = fields.String(allow_none=True, metadata={
        "description": "the latest verdict: spam, unsure, ham, or null if never classified"})


class AnswerSchema(Schema):
    question = fields.String()
    answer = fields.String(metadata={"description": "quotes or sentences citing passages "
                                                    f"by number, like [2]; {HIGHLIGHTED}"})
    found = fields.Boolean()
    citations = fields.List(fields.Integer())
    generator = fields.String()
    notes = fields.List(fields.String())
    passages = fields.List(fields.Nested(PassageSchema))
