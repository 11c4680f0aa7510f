"""The store on a real Postgres: migrations match the models, uint256 round-trips exactly."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from store.engine import libpq_url, make_engine


def test_migrations_match_models(db_url):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    import store.models  # noqa: F401
    from store.base import Base

    eng = make_engine(db_url)
    with eng.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    eng.dispose()
    assert diff == [], f"models and migrations differ; write the next revision with scripts/make-migration: {diff}"


def test_migrate_is_idempotent(db_url):
    from store.migrate import current, upgrade

    upgrade(db_url)
    upgrade(db_url)
    from store.preflight import head_revision

    assert current(db_url) == head_revision()


def test_uint256_roundtrips_exactly(db_url):
    from store.models import Holding

    big = 2**256 - 1
    eng = make_engine(db_url)
    with Session(eng) as s:
        s.add(Holding(chain="t", owner="0x" + "aa" * 20, batch_id=big, tradable=big, listed=0, retired=1, valid_from=1))
        s.commit()
        got = s.scalars(select(Holding)).one()
        assert got.tradable == big and isinstance(got.tradable, int) and got.batch_id == big
        with pytest.raises(Exception, match="never float"):
            s.add(Holding(chain="t", owner="0x" + "bb" * 20, batch_id=1, tradable=1.5, listed=0, retired=0, valid_from=1))
            s.flush()
        s.rollback()
        with pytest.raises(Exception, match="uint256"):
            s.add(Holding(chain="t", owner="0x" + "bb" * 20, batch_id=1, tradable=2**256, listed=0, retired=0, valid_from=1))
            s.flush()
    eng.dispose()
    with psycopg.connect(libpq_url(db_url)) as conn:
        col = conn.execute(
            "SELECT numeric_precision, numeric_scale FROM information_schema.columns "
            "WHERE table_name='holding' AND column_name='tradable'"
        ).fetchone()
    assert col == (78, 0)


def test_cli_migrate(db_url, monkeypatch, capsys):
    from carbonledger.cli import main

    monkeypatch.setenv("CARBONLEDGER_DATABASE_URL", db_url)
    monkeypatch.chdir("/")
    assert main(["migrate"]) == 0
    from store.preflight import head_revision

    assert f"revision {head_revision()}" in capsys.readouterr().out
