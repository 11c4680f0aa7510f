"""Connections: SQLAlchemy engines for the ORM/API and plain psycopg for the bulk paths."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine


def sqlalchemy_url(url: str) -> str:
    """postgresql://... -> postgresql+psycopg://... (psycopg 3 driver)."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    raise ValueError("database url must start with postgresql://")


def libpq_url(url: str) -> str:
    """Any accepted spelling -> postgresql://... for psycopg.connect."""
    return "postgresql://" + sqlalchemy_url(url)[len("postgresql+psycopg://"):]


def make_engine(url: str, **kw: object) -> Engine:
    return create_engine(sqlalchemy_url(url), pool_pre_ping=True, **kw)  # type: ignore[arg-type]
