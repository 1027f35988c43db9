"""Alembic environment: the database comes from spamsift's settings (or the caller's URL)."""

import warnings
from logging.config import fileConfig

from alembic import context

from core.db import get_engine
from core.models import Base

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata

# Reflection warns that it cannot compare the HNSW expression indexes; include_object skips them.
warnings.filterwarnings("ignore", message=".*detected to include an operator clause.*")


def include_object(obj, name, type_, reflected, compare_to):
    # Expression indexes (the per-dimension HNSW indexes) cannot be compared by autogenerate.
    if type_ == "index" and name and name.startswith("ix_chunks_embedding_hnsw_"):
        return False
    return True


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = get_engine(config.attributes.get("database_url"))
    with engine.connect() as connection:
        _run(connection)


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_object=include_object,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run against a database")
run_migrations_online()
