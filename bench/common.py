"""Shared bench plumbing: a migrated scratch database on CARBONLEDGER_DATABASE_URL's server."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def server_url() -> str:
    """The Postgres server the benches use (CARBONLEDGER_DATABASE_URL, default the local one), as a libpq URL."""
    from store.engine import libpq_url

    return libpq_url(os.environ.get("CARBONLEDGER_DATABASE_URL", DEFAULT_SERVER))


@contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    """Create `<prefix>_<random>` on the bench server, migrate it, yield its URL; drop it (FORCE) afterwards."""
    import psycopg

    from store.migrate import upgrade

    base = server_url()
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect(base, autocommit=True)
    try:
        admin.execute(f'CREATE DATABASE "{name}"')
        url = base.rsplit("/", 1)[0] + "/" + name
        try:
            upgrade(url)
            yield url
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()
