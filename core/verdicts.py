"""The verdict of an email, read in one place, and the one shape it takes outside.

An email's verdict is the prediction ``emails.verdict_id`` points at: set when the email is
judged, and moved when a newly activated model re-scores it (a roll back points it at the
earlier model's prediction again). Lists, filters, search, the API, webhooks, callbacks and
the CLI all read it here.
"""

from __future__ import annotations

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session, aliased

from core.models import Email, Prediction


def verdict_alias():
    """A ``Prediction`` alias to join on ``Email.verdict_id`` (outer join: no verdict yet)."""
    verdict = aliased(Prediction, name="verdict")
    return verdict, verdict.id == Email.verdict_id


def verdict_of(session: Session, email_id: int) -> Prediction | None:
    return session.scalar(select(Prediction).join(Email, Email.verdict_id == Prediction.id)
                          .where(Email.id == email_id))


def verdict_id_of(connection: Connection, email_id: int) -> int | None:
    """The id of the email's verdict, None before it has one: a cheap read for a waiter."""
    return connection.execute(select(Email.verdict_id).where(Email.id == email_id)).scalar()


def verdicts_of(session: Session, email_ids: list[int]) -> dict[int, str]:
    """Each email's verdict word (emails without one are left out)."""
    rows = session.execute(select(Email.id, Prediction.verdict)
                           .join(Prediction, Prediction.id == Email.verdict_id)
                           .where(Email.id.in_(email_ids)))
    return {email_id: verdict.value for email_id, verdict in rows}


# SQL for filters written by hand (core/search.py): the verdict of the email aliased ``e``.
VERDICT_OF_E = "(SELECT p.verdict::text FROM predictions p WHERE p.id = e.verdict_id)"


def verdict_view(prediction: Prediction) -> dict:
    """The verdict as the API, webhooks, callbacks and ``spamsift classify`` give it."""
    verdict = prediction.verdict.value
    return {"verdict": verdict, "p_spam": prediction.p_spam,
            "spam_score": round(prediction.p_spam, 4), "spam_flag": verdict == "spam",
            "thresholds": prediction.thresholds, "model_id": prediction.model_id,
            "reasons": prediction.evidence, "latency_ms": prediction.latency_ms,
            "classified_at": prediction.created_at.isoformat()
            if prediction.created_at else None}


def spam_headers(prediction: Prediction) -> dict[str, str]:
    """Headers an MTA can act on, like SpamAssassin's."""
    verdict = prediction.verdict.value
    return {"X-Spam-Flag": "YES" if verdict == "spam" else "NO",
            "X-Spam-Score": f"{prediction.p_spam:.4f}", "X-Spam-Status": verdict}
