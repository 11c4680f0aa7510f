"""Alembic environment: runs against the URL handed in by `store.migrate` (or alembic.ini / env)."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine, pool

import store.models  # noqa: F401  (registers the tables)
import store.outbox  # noqa: F401
from store.base import Base

target_metadata = Base.metadata


def _url() -> str:
    url = context.config.get_main_option("sqlalchemy.url") or os.environ.get("CARBONLEDGER_DATABASE_URL")
    if not url:
        raise RuntimeError("no database URL for migrations")
    from store.engine import sqlalchemy_url

    return sqlalchemy_url(url)


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
