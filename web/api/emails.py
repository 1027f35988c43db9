"""/api/emails and /api/classify."""

from __future__ import annotations

from flask import Response, request
from flask_smorest import Blueprint, abort
from sqlalchemy.exc import DBAPIError

from core.config import get_settings
from core.db import session_scope
from core.feedback import set_label
from core.mailbox import MailFilter, list_emails, wait_for_prediction
from core.models import Email, EmailStatus, Label, Scope, Verdict
from core.review import review_queue
from web.api.schemas import (ClassifyQuery, ClassifyResult, EmailPage, EmailQuery,
                             EmailWithPrediction, FeedbackSchema, LabelRequest, ReviewPage,
                             ReviewQuery)
from core.verdicts import verdict_of, verdict_view
from web.auth import api_auth, api_user
from workers.client import accept_message, index_space

blueprint = Blueprint("api_emails", __name__, description="Mail, labels and verdicts")
SECURITY = [{"bearerAuth": []}]


def get_email_or_404(session, email_id: int) -> Email:
    email = session.get(Email, email_id)
    if email is None:
        abort(404, message=f"no email with id {email_id}")
    return email


@blueprint.route("/emails")
@api_auth()
@blueprint.arguments(EmailQuery, location="query")
@blueprint.response(200, EmailPage)
@blueprint.doc(security=SECURITY)
def list_mail(query):
    """Emails, newest first, with their latest verdict; filters and paging."""
    label = query.get("label")
    filters = MailFilter(
        label=Label(label) if label in ("spam", "ham") else None, unlabeled=label == "none",
        verdict=Verdict(query["verdict"]) if "verdict" in query else None,
        status=EmailStatus(query["status"]) if "status" in query else None,
        sender=query.get("sender"), since=query.get("since"), until=query.get("until"),
        text=query.get("q"))
    with session_scope() as session:
        rows, total = list_emails(session, filters, query["page"], query["per_page"])
        return {"items": [{"email": e, "prediction": p} for e, p in rows], "total": total,
                "page": query["page"], "per_page": query["per_page"]}


@blueprint.route("/emails/<int:email_id>")
@api_auth()
@blueprint.response(200, EmailWithPrediction)
@blueprint.doc(security=SECURITY)
def get_mail(email_id: int):
    """One email: headers, text, attachments, defects, and its latest verdict."""
    with session_scope() as session:
        email = get_email_or_404(session, email_id)
        return {"email": email, "prediction": verdict_of(session, email_id)}


@blueprint.route("/emails/<int:email_id>/raw")
@api_auth()
@blueprint.doc(security=SECURITY, responses={"200": {"description": "the message as received",
                                                     "content": {"message/rfc822": {}}}})
def raw_mail(email_id: int):
    """The message exactly as received (410 once the retention purge has removed it)."""
    with session_scope() as session:
        email = get_email_or_404(session, email_id)
        if email.raw_purged_at is not None:
            abort(410, message=f"the raw message was purged on {email.raw_purged_at:%Y-%m-%d} "
                               "(SPAMSIFT_RETENTION_DAYS); its text and verdict remain")
        return Response(email.raw, mimetype="message/rfc822", headers={
            "Content-Disposition": f'attachment; filename="email-{email_id}.eml"'})


@blueprint.route("/emails/<int:email_id>/label", methods=["POST"])
@api_auth(admin=True)
@blueprint.arguments(LabelRequest)
@blueprint.response(200, FeedbackSchema)
@blueprint.doc(security=SECURITY)
def label_mail(body, email_id: int):
    """Mark an email spam or ham (recorded as feedback with who and when)."""
    with session_scope() as session:
        email = get_email_or_404(session, email_id)
        feedback = set_label(session, email, Label(body["label"]), api_user().id, "api")
        return {"email_id": email_id, "label": body["label"], "changed": feedback is not None}


@blueprint.route("/review")
@api_auth()
@blueprint.arguments(ReviewQuery, location="query")
@blueprint.response(200, ReviewPage)
@blueprint.doc(security=SECURITY)
def review(query):
    """The unlabeled mail to label next, in order: what the active model is least sure of,
    spread over different kinds of mail. Answer with POST /api/emails/ID/label."""
    with session_scope() as session:
        items = review_queue(session, index_space(), query["k"])
        return {"items": [{"email": item.email, "prediction": item.prediction,
                           "uncertainty": item.uncertainty} for item in items]}


@blueprint.route("/classify", methods=["POST"])
@api_auth(scope=Scope.INGEST)
@blueprint.arguments(ClassifyQuery, location="query")
@blueprint.response(200, ClassifyResult)
@blueprint.doc(security=SECURITY, requestBody={
    "content": {"message/rfc822": {"schema": {"type": "string", "format": "binary"}}}})
def classify(query):
    """Upload a raw message; returns its verdict when ready within ``wait`` ms (202 if not)."""
    raw = request.get_data()
    if not raw.strip():
        abort(422, message="send the raw message as the request body")
    if len(raw) > get_settings().max_message_bytes:
        abort(413, message="message over SPAMSIFT_MAX_MESSAGE_BYTES")
    try:
        stored = accept_message(raw, "api")
    except DBAPIError:
        abort(503, message="database unavailable; retry later")
    prediction = wait_for_prediction(stored.email_id, min(
        query["wait"], get_settings().longest_request_wait_ms))
    result = {"id": stored.email_id, "duplicate": not stored.created, "status": "accepted"}
    if prediction is None:
        return result, 202
    return {**result, "status": "classified", **verdict_view(prediction)}
