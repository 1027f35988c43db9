"""/api/models: the registry, training, activation and roll back."""

from __future__ import annotations

from flask_smorest import Blueprint, abort
from sqlalchemy import select

from core.db import session_scope
from core.models import TrainedModel
from core.registry import UnknownModel, get_model
from web.api.schemas import JobSchema, ModelDetail, ModelSchema, TrainRequest
from web.auth import api_auth
from workers.client import activate_model, queue_training, roll_back_model

blueprint = Blueprint("api_models", __name__, description="The model registry")
SECURITY = [{"bearerAuth": []}]


@blueprint.route("/models")
@api_auth()
@blueprint.response(200, ModelSchema(many=True))
@blueprint.doc(security=SECURITY)
def list_models():
    """Every trained model, newest first."""
    with session_scope() as session:
        return session.scalars(select(TrainedModel).order_by(TrainedModel.id.desc())).all()


@blueprint.route("/models/<int:model_id>")
@api_auth()
@blueprint.response(200, ModelDetail)
@blueprint.doc(security=SECURITY)
def model_detail(model_id: int):
    """A model's metrics, thresholds, confusion matrix and ROC / PR curves."""
    with session_scope() as session:
        try:
            return get_model(session, model_id)
        except UnknownModel as exc:
            abort(404, message=str(exc))


def _queue_training(body: dict):
    try:
        with session_scope() as session:
            return queue_training(session, body["kind"], body.get("pooling"), body["activate"],
                                  body["options"])
    except ValueError as exc:
        abort(422, message=str(exc))


@blueprint.route("/models", methods=["POST"])
@api_auth(admin=True)
@blueprint.arguments(TrainRequest)
@blueprint.response(202, JobSchema)
@blueprint.doc(security=SECURITY)
def create_model(body):
    """Train a model on the training queue; follow the returned job (``options``: for kind
    "lora")."""
    return _queue_training(body)


@blueprint.route("/models/train", methods=["POST"])
@api_auth(admin=True)
@blueprint.arguments(TrainRequest)
@blueprint.response(202, JobSchema)
@blueprint.doc(security=SECURITY)
def train(body):
    """The same as ``POST /api/models`` (kept for existing clients)."""
    return _queue_training(body)


@blueprint.route("/models/<int:model_id>/activate", methods=["POST"])
@api_auth(admin=True)
@blueprint.response(200, ModelSchema)
@blueprint.doc(security=SECURITY)
def activate(model_id: int):
    """Make a model the active one; it re-scores the mail in the background (a job)."""
    with session_scope() as session:
        try:
            return activate_model(session, model_id)
        except UnknownModel as exc:
            abort(404, message=str(exc))


@blueprint.route("/models/rollback", methods=["POST"])
@api_auth(admin=True)
@blueprint.response(200, ModelSchema)
@blueprint.doc(security=SECURITY)
def rollback():
    """Activate the model that was active before the current one."""
    with session_scope() as session:
        try:
            return roll_back_model(session)
        except UnknownModel as exc:
            abort(409, message=str(exc))
