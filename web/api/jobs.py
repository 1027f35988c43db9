"""/api/jobs: state and progress of imports, embedding and training."""

from __future__ import annotations

from flask_smorest import Blueprint, abort
from sqlalchemy import select

from core.db import session_scope
from core.models import Job, JobState
from web.api.schemas import JobQuery, JobSchema
from web.auth import api_auth
from workers.client import cancel_job

blueprint = Blueprint("api_jobs", __name__, description="Background jobs")
SECURITY = [{"bearerAuth": []}]


@blueprint.route("/jobs")
@api_auth()
@blueprint.arguments(JobQuery, location="query")
@blueprint.response(200, JobSchema(many=True))
@blueprint.doc(security=SECURITY)
def list_jobs(query):
    """Newest jobs first."""
    statement = select(Job).order_by(Job.id.desc()).limit(query["limit"])
    if "state" in query:
        statement = statement.where(Job.state == JobState(query["state"]))
    with session_scope() as session:
        return session.scalars(statement).all()


@blueprint.route("/jobs/<int:job_id>")
@api_auth()
@blueprint.response(200, JobSchema)
@blueprint.doc(security=SECURITY)
def get_job(job_id: int):
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None:
            abort(404, message=f"no job with id {job_id}")
        return job


@blueprint.route("/jobs/<int:job_id>/cancel", methods=["POST"])
@api_auth(admin=True)
@blueprint.response(200, JobSchema)
@blueprint.doc(security=SECURITY)
def cancel(job_id: int):
    """Cancel a queued or running job (409 when it has finished); a training run stops within
    seconds and keeps no model."""
    try:
        with session_scope() as session:
            return cancel_job(session, job_id)
    except LookupError as exc:
        abort(404, message=str(exc))
    except ValueError as exc:
        abort(409, message=str(exc))
