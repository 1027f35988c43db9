"""The model registry: trained models, exactly one active, activation and roll back."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from core.models import TrainedModel


class UnknownModel(LookupError):
    pass


def active_model(session: Session) -> TrainedModel | None:
    return session.scalar(select(TrainedModel).where(TrainedModel.is_active))


def get_model(session: Session, model_id: int) -> TrainedModel:
    model = session.get(TrainedModel, model_id)
    if model is None:
        raise UnknownModel(f"no model with id {model_id}")
    return model


def activate(session: Session, model_id: int) -> TrainedModel:
    model = get_model(session, model_id)
    session.execute(update(TrainedModel).where(TrainedModel.is_active)
                    .values(is_active=False))
    session.flush()
    model.is_active = True
    model.activated_at = func.clock_timestamp()
    session.flush()
    session.refresh(model)  # load activated_at, so the row is whole once detached
    return model


def roll_back(session: Session) -> TrainedModel:
    """Activate the model that was active before the current one."""
    current = active_model(session)
    query = select(TrainedModel).where(TrainedModel.activated_at.is_not(None))
    if current is not None:
        query = query.where(TrainedModel.id != current.id,
                            TrainedModel.activated_at <= current.activated_at)
    previous = session.scalar(query.order_by(TrainedModel.activated_at.desc()).limit(1))
    if previous is None:
        raise UnknownModel("no earlier active model to roll back to")
    return activate(session, previous.id)
