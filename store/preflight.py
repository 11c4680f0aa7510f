"""Start-up check of the database: reachable, and migrated to the schema this version needs (one line otherwise)."""

from __future__ import annotations

from core.preflight import OperatorError, first_line, scrub_password


def check_database(url: str, *, migrated: bool = True, writable: bool = False) -> None:
    """The database answers (and, with `migrated`, its schema is at this version's head revision; with `writable`,
    it is a primary, not a read-only standby)."""
    import psycopg

    from core.config import redact_url
    from store.engine import libpq_url

    shown = redact_url(url)
    try:
        with psycopg.connect(libpq_url(url), connect_timeout=5, autocommit=True) as conn:
            if writable and conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:  # type: ignore[index]
                raise OperatorError(f"database {shown} is a read-only standby (a streaming replica)",
                                    "point database.url / CARBONLEDGER_DATABASE_URL at the primary; replicas are "
                                    "for the API's database.read_url")
            if not migrated:
                return
            try:
                row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            except psycopg.errors.UndefinedTable:
                row = None
    except psycopg.Error as exc:  # libpq may quote the URL's password (a bad %-escape in it): never show it
        reason = scrub_password(first_line(exc), url)
        if "does not exist" in reason:
            raise OperatorError(f"database {shown}: {reason}",
                                "create it (createdb) or point database.url / CARBONLEDGER_DATABASE_URL at another")
        raise OperatorError(f"cannot connect to the database at {shown}: {reason}",
                            "start Postgres, or set database.url / CARBONLEDGER_DATABASE_URL to a running server")
    head = head_revision()
    if row is None:
        raise OperatorError(f"database {shown} has no carbonledger schema", "run `carbonledger migrate` first")
    if row[0] != head:
        raise OperatorError(f"database {shown} is at schema revision {row[0]}, this version needs {head}",
                            "run `carbonledger migrate`")


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    from store.migrate import alembic_config

    return str(ScriptDirectory.from_config(alembic_config("postgresql://unused")).get_current_head())


def replica_problem(url: str) -> str | None:
    """What is wrong with a read replica (`database.read_url`), in one line without its password, or None. Not a
    start-up refusal: the API reads the primary while no replica is healthy."""
    import psycopg

    from core.config import redact_url
    from store.engine import libpq_url

    try:
        check_database(url)
    except OperatorError as err:
        return f"read replica: {err.what}"
    shown = redact_url(url)
    try:
        with psycopg.connect(libpq_url(url), connect_timeout=5, autocommit=True) as conn:
            standby = conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]  # type: ignore[index]
    except psycopg.Error as exc:
        return f"read replica {shown}: {scrub_password(first_line(exc), url)}"
    if not standby:
        return f"read replica {shown} is not a standby (pg_is_in_recovery() is false): the API will not read it"
    return None
