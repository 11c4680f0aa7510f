"""`carbonledger serve`: the GraphQL API under uvicorn."""

from __future__ import annotations

import argparse
import contextlib
import logging
import socket
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import uvicorn

log = logging.getLogger("carbonledger.api")


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the GraphQL API (GraphiQL at /graphql; /health, /ready, /metrics)."""
    import uvicorn

    from core.config import load_settings
    from core.database import resolve_database_url
    from core.logs import setup_logging
    from core.preflight import OperatorError, check_port, ensure
    from core.wire import OneWriteHttpToolsProtocol
    from store.preflight import check_database, replica_problem
    from gqlapi.app import create_app

    settings = load_settings(args.config)
    setup_logging(settings.log_level)
    host = args.host or settings.api.host
    port = args.port if args.port is not None else settings.api.port
    db_url = resolve_database_url(settings)
    ensure([("database", lambda: check_database(db_url)), ("port", lambda: check_port(host, port, "api.port"))],
           wait=args.wait)
    if settings.api.live and not settings.api.live_listen_url:
        try:  # a standby answers queries but never delivers a notice: live updates would stay silent
            check_database(db_url, writable=True)
        except OperatorError as err:
            log.warning("live updates need the primary", extra={"check": "database.url", "error": err.what,
                        "fix": "set database.url (or api.live_listen_url) to the primary; replicas go in "
                               "database.read_url"})
    for url in settings.database.read_urls:  # named, never fatal: reads fall back to the primary
        problem = replica_problem(url)
        if problem is not None:
            log.warning("read replica not usable; reads go to the healthy replicas or the primary meanwhile",
                        extra={"check": "database.read_url", "error": problem, "fix": "check database.read_url"})
    from core.shutdown import REQUESTED

    if REQUESTED.is_set():  # a SIGTERM during start-up whose StopRequested something swallowed: do not serve
        log.info("API stopped")
        return 0
    if args.workers > 1:
        import os

        if args.config:
            os.environ["CARBONLEDGER_CONFIG"] = args.config
        with _stopped_by_sigterm():
            _run_workers(uvicorn.Config("gqlapi.app:app_from_env", factory=True, host=host, port=port,
                                        workers=args.workers, log_level="warning", log_config=None,
                                        ws_max_size=settings.api.live_max_message_bytes,
                                        http=OneWriteHttpToolsProtocol))  # core.wire: one write per response
        return 0
    app = create_app(settings, db_url, pool_size=args.pool_size)
    print(f"GraphQL API on http://{host}:{port}/graphql")
    with _stopped_by_sigterm():
        uvicorn.run(app, host=host, port=port, log_level="warning", log_config=None,  # our JSON lines, not uvicorn's
                    ws_max_size=settings.api.live_max_message_bytes, http=OneWriteHttpToolsProtocol)
    return 0


def _run_workers(config: uvicorn.Config) -> None:
    """uvicorn's own supervisor (restarts, signals, health pings), each worker listening on a socket of its own.

    uvicorn binds one socket in the supervisor and every worker accepts from it. A worker woken by new connections
    accepts all that are queued (uvloop and asyncio accept in a loop), so connections opened together, as a load
    balancer's or a client pool's keep-alive connections are, tend to land on one worker: measured with 8 keep-alive
    clients and 2 workers, one worker got 1,307 of 1,315 CPU samples while the other idled. On Linux each worker binds
    its own listener with SO_REUSEPORT instead, and the kernel spreads connections over them by address hash.
    Trade-offs, against one shared queue: a connection goes to its worker however busy that worker is; connections
    still queued (not yet accepted) when a worker's listener closes (it dies, is restarted, the API stops) are reset
    unless `net.ipv4.tcp_migrate_req = 1` (Linux 5.14+) hands them to another listener of the group; while no worker
    listens, connections are refused rather than queued. Port 0, and systems whose SO_REUSEPORT does not balance,
    keep the shared socket. A worker that fails to start stops the supervisor (uvicorn's rule), and `serve` then
    fails (exit 1, one line), so a service manager sees a failure rather than a clean stop."""
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    from core.preflight import OperatorError

    if sys.platform == "linux" and config.port != 0 and config.uds is None and config.fd is None:
        sockets: list[socket.socket] = PerWorkerListener(config.host, config.port)
    else:
        sockets = [config.bind_socket()]
    supervisor = Multiprocess(config, sockets=sockets)
    supervisor.run()
    if any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes):
        raise OperatorError("an API worker failed to start, so the API stopped",
                            "fix what the worker's error line above names (the port, the database), then start again")


class PerWorkerListener(list):  # type: ignore[type-arg]
    """The `sockets` uvicorn's supervisor hands to each worker it starts. Empty here; multiprocessing's spawn pickles
    a worker's arguments, and unpickling it in the worker binds a listener of the worker's own (`reuseport_listener`),
    for the first workers and for any the supervisor starts again alike."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__()
        self.address = (host, port)

    def __reduce__(self) -> tuple:  # type: ignore[override]
        return reuseport_listener, self.address


def reuseport_listener(host: str, port: int) -> list[socket.socket]:
    """[a socket bound to host:port with SO_REUSEPORT]; uvicorn's server listens on it (with config.backlog). A
    worker that cannot bind exits with uvicorn's start-up failure code, so the supervisor stops instead of starting
    it again and again."""
    from uvicorn.config import STARTUP_FAILURE

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        print(f"API worker cannot listen on {host}:{port} ({exc.strerror or exc}); stop whatever uses port {port}, "
              "or choose another with --port or api.port", file=sys.stderr, flush=True)
        raise SystemExit(STARTUP_FAILURE) from None
    return [sock]


@contextlib.contextmanager
def _stopped_by_sigterm() -> Iterator[None]:
    """uvicorn handles SIGTERM (graceful shutdown), then re-raises it through the handler it found, ours
    (core.shutdown): that is a normal stop, so exit handlers (the embedded Postgres) still run."""
    from core.shutdown import StopRequested

    try:
        yield
    except StopRequested:
        pass
    log.info("API stopped")


def add_serve_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `serve` on the carbonledger command's sub-parsers."""
    s = sub.add_parser("serve", help=cmd_serve.__doc__)
    s.add_argument("--host", help="bind address (default: api.host)")
    s.add_argument("--port", type=int, help="port (default: api.port)")
    s.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    s.add_argument("--pool-size", type=int, help="database connections per worker (default: api.pool_size)")
    s.add_argument("--wait", action="store_true", help="at start, keep retrying an unreachable database "
                   "(one log line per change, backoff to 30 s) instead of failing at once")
    s.set_defaults(func=cmd_serve)
