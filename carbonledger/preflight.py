"""Start-up checks of what a command depends on, each failing with one line that says what failed and how to fix it.

Every daemon checks its dependencies once before it starts (database reachable and migrated to head, each chain's
node answering with the configured chain id, its port free) and fails fast with an `OperatorError`; with `--wait`
it keeps trying instead, logging one line when the state changes (not one per retry), backing off to 30 s.
`carbonledger.cli.main` prints an OperatorError as `carbonledger: <what failed> — <how to fix it>`.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger("carbonledger.preflight")


class OperatorError(Exception):
    """A problem the operator can fix: `what` failed, do `fix`."""

    def __init__(self, what: str, fix: str) -> None:
        super().__init__(f"{what} — {fix}")
        self.what, self.fix = what, fix


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[-1] if text else type(exc).__name__).strip()[:200]


def check_database(url: str, *, migrated: bool = True) -> None:
    """The database answers (and, with `migrated`, its schema is at this version's head revision)."""
    import psycopg

    from carbonledger.config import redact_url
    from store.engine import libpq_url

    shown = redact_url(url)
    try:
        with psycopg.connect(libpq_url(url), connect_timeout=5, autocommit=True) as conn:
            if not migrated:
                return
            try:
                row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            except psycopg.errors.UndefinedTable:
                row = None
    except psycopg.Error as exc:  # libpq may quote the URL's password (a bad %-escape in it): never show it
        reason = scrub_password(_first_line(exc), url)
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


def scrub_password(text: str, url: str) -> str:
    """`text` without the password of `url`, raw or percent-decoded."""
    from urllib.parse import unquote, urlsplit

    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    for secret in {password, unquote(password) if password else None} - {None, ""}:
        text = text.replace(secret, "***")
    return text


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    from store.migrate import alembic_config

    return str(ScriptDirectory.from_config(alembic_config("postgresql://unused")).get_current_head())


def check_rpc(chain: str, settings: Any) -> int:
    """The chain's node answers (evm: eth_chainId, matching `chain_id` when configured; substrate: its genesis
    hash); returns the chain id (0 on substrate)."""
    from carbonledger.config import redact_url
    from chains.rpc import RpcClient, RpcError, RpcTransportError

    url = str(settings.rpc_url).rstrip("/")
    shown = redact_url(url, path=not url.startswith(("http://127.", "http://localhost")))
    client = RpcClient(url, timeout_s=min(settings.request_timeout_s, 5.0), retries=0)
    substrate = getattr(settings, "family", "evm") == "substrate"
    try:
        if substrate:  # the genesis hash answers; the SS58 prefix is checked when the reader's runtime is loaded
            genesis = client.call("chain_getBlockHash", [0])
            if not isinstance(genesis, str):
                raise ValueError(f"chain_getBlockHash(0) answered {str(genesis)[:60]!r}")
            return 0
        got = int(client.call("eth_chainId"), 16)
    except (RpcError, RpcTransportError, ValueError, TypeError) as exc:
        raise OperatorError(f"chain {chain}: no JSON-RPC node answers at {shown} ({_first_line(exc)})",
                            f"start the node, or fix chains.{chain}.rpc_url") from None
    finally:
        client.close()
    if settings.chain_id is not None and got != settings.chain_id:
        raise OperatorError(f"chain {chain}: the node at {shown} is chain id {got}, the config expects {settings.chain_id}",
                            f"point chains.{chain}.rpc_url at the right node, or fix chains.{chain}.chain_id")
    return got


def check_port(host: str, port: int, setting: str) -> None:
    """Nothing listens on host:port yet (port 0 = any free port: always fine)."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise OperatorError(f"cannot listen on {host}:{port} ({exc.strerror or exc})",
                                f"stop whatever uses port {port}, or choose another with --port or {setting}") from None


def ensure(checks: Sequence[tuple[str, Callable[[], object]]], *, wait: bool = False,
           stop: threading.Event | None = None, max_backoff_s: float = 30.0) -> None:
    """Run each named check; without `wait` the first failure raises. With `wait`, retry failed checks with
    exponential backoff, logging a line only when a check's outcome changes, until all pass (or `stop` is set)."""
    pending = list(checks)
    last: dict[str, str] = {}
    delay = 1.0
    while pending:
        still = []
        for name, check in pending:
            try:
                check()
            except OperatorError as err:
                if not wait:
                    raise
                if last.get(name) != str(err):
                    log.warning("waiting for a dependency", extra={"check": name, "error": err.what, "fix": err.fix})
                    last[name] = str(err)
                still.append((name, check))
            else:
                if name in last:
                    log.info("dependency is up", extra={"check": name})
        pending = still
        if pending:
            if stop is not None and stop.wait(delay):
                return
            if stop is None:
                time.sleep(delay)
            delay = min(max_backoff_s, delay * 2)
