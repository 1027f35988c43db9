"""/api/search and similar emails."""

from __future__ import annotations

from flask_smorest import Blueprint, abort

from core.db import session_scope
from core.models import Email
from core.search import SearchFilter, search, vector_search
from core.vectors import document_vectors
from web.api.schemas import AnswerSchema, AskRequest, HitSchema, SearchQuery
from web.auth import api_auth
from workers.remote import ask_remote, remote_query_embedder

blueprint = Blueprint("api_search", __name__, description="Search")
SECURITY = [{"bearerAuth": []}]


def search_filter(args: dict) -> SearchFilter:
    return SearchFilter(label=args.get("label"), verdict=args.get("verdict"),
                        sender=args.get("sender"), since=args.get("since"),
                        until=args.get("until"))


@blueprint.route("/search")
@api_auth()
@blueprint.arguments(SearchQuery, location="query")
@blueprint.response(200, HitSchema(many=True))
@blueprint.doc(security=SECURITY)
def search_mail(args):
    """Keyword, vector or hybrid (reciprocal rank fusion) search; hits are emails."""
    try:
        with session_scope() as session:
            return search(session, args["q"], args["mode"], args["k"], search_filter(args),
                          remote_query_embedder(), offset=(args["page"] - 1) * args["k"])
    except TimeoutError as exc:
        abort(503, message=str(exc))


def similar_emails(session, email: Email, k: int = 10):
    """Nearest emails in the vector space the email is indexed in."""
    encoder = email.indexed_with
    if encoder is None:
        return []
    vectors = document_vectors(session, encoder, [email.id])
    if email.id not in vectors:
        return []
    return vector_search(session, encoder, vectors[email.id], k, exclude_email_id=email.id)


@blueprint.route("/emails/<int:email_id>/similar")
@api_auth()
@blueprint.response(200, HitSchema(many=True))
@blueprint.doc(security=SECURITY)
def similar(email_id: int):
    """The emails nearest to this one (by their document vectors)."""
    with session_scope() as session:
        email = session.get(Email, email_id)
        if email is None:
            abort(404, message=f"no email with id {email_id}")
        return similar_emails(session, email)


@blueprint.route("/ask", methods=["POST"])
@api_auth()
@blueprint.arguments(AskRequest)
@blueprint.response(200, AnswerSchema)
@blueprint.doc(security=SECURITY)
def ask(body):
    """Answer a question from the mail, citing the emails it quotes (numbers → passages).
    Spam is left out unless ``include_spam`` is true."""
    filters = {key: body[key] for key in ("label", "sender") if key in body}
    filters["exclude_spam"] = not body["include_spam"]
    try:
        return ask_remote(body["question"], filters)
    except TimeoutError as exc:
        abort(503, message=str(exc))
