"""`carbonledger index`: run the indexer daemon with progress, JSON logs, /health /ready /metrics, SIGTERM."""

from __future__ import annotations

import argparse
import sys
import logging
import threading
import time

log = logging.getLogger("carbonledger.indexer")


def cmd_index(args: argparse.Namespace) -> int:
    """Follow every configured chain into Postgres (backfill, then the head)."""
    from core.config import load_settings
    from core.database import resolve_database_url
    from core.logs import setup_logging
    from chains.preflight import check_rpc
    from core.preflight import check_port, ensure
    from store.preflight import check_database
    from core.service import OpsServer
    from core.shutdown import stop_on_signals
    from indexer.progress import Metrics, Progress
    from indexer.runner import EXIT_REORG_TOO_DEEP, Indexer

    settings = load_settings(args.config)
    setup_logging(settings.log_level)
    stop = threading.Event()
    host, port = settings.indexer.host, args.port if args.port is not None else settings.indexer.port
    # Until the loop runs, SIGTERM raises StopRequested (core.shutdown): a stop during start-up (slow
    # imports, RPC checks, database) unwinds at once and the command exits 0.
    db_url = resolve_database_url(settings)
    ensure([("database", lambda: check_database(db_url, writable=True)),
            *[(f"chain {n}", lambda n=n, c=c: check_rpc(n, c)) for n, c in settings.chains.items()],
            *([("ops port", lambda: check_port(host, port, "indexer.port"))] if port > 0 else [])], wait=args.wait)
    idx = Indexer(settings, db_url=db_url, stop=stop)
    stats = [s.stats for s in idx.syncs]
    metrics = Metrics()

    def ready() -> tuple[bool, dict]:
        detail = {s.chain: {"mode": s.mode, "block": s.block, "head": s.head, "lag": s.lag, "problem": s.problem,
                            "waiting": s.waiting} for s in stats}
        # A standby is ready (it serves nothing and takes over when needed); a leader when within 1 block of head,
        # its last step worked and it is not waiting on a node that is behind it.
        ok = all(s.problem is None and s.waiting is None
                 and (s.mode == "standby" or (s.leader and s.head >= 0 and s.lag <= 1)) for s in stats)
        return ok, {"chains": detail}

    def health() -> tuple[bool, dict]:
        # Wedged if the loop has not come round for a minute (each step is bounded by RPC timeouts).
        stale = [s.chain for s in stats if time.monotonic() - s.last_step > 60]
        return not stale, {"stalled": stale}

    ops = progress = None
    try:
        ops = OpsServer(host, port, ready, metrics.registry, health).start() if port >= 0 else None
        progress = Progress(stats, metrics, tty=None if not args.no_progress else False).start()
        stop_on_signals(stop)  # from here SIGTERM finishes the current block or range, commits and exits 0
        log.info("indexer started", extra={"chains": [s.chain for s in stats], "ops_port": ops.port if ops else None})
        if args.once:  # the same loop, stopping once every chain is caught up
            code = idx.run(until=lambda i: all(s.stats.leader and s.caught_up() for s in i.syncs))
        else:
            code = idx.run()
    finally:
        if progress is not None:
            progress.stop()
        if ops is not None:
            ops.stop()
        idx.close()
    if code == EXIT_REORG_TOO_DEEP:
        log.critical("indexer halted: reorg deeper than finality; data left untouched", extra={"exit_code": code})
    else:
        log.info("indexer stopped", extra={"exit_code": code})
    return code


def add_index_command(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("index", help=cmd_index.__doc__)
    s.add_argument("--once", action="store_true", help="exit 0 once every chain is caught up to its head")
    s.add_argument("--port", type=int, default=None, help="ops port (default indexer.port; 0 = any free, -1 = none)")
    s.add_argument("--no-progress", action="store_true", help="no live table, JSON progress lines only")
    s.add_argument("--wait", action="store_true", help="at start, keep retrying an unreachable database or node "
                   "(one log line per change, backoff to 30 s) instead of failing at once")
    s.set_defaults(func=cmd_index)


def cmd_reset(args: argparse.Namespace) -> int:
    """Delete everything indexed for one chain (so it can be indexed again from its start block)."""
    import psycopg

    from core.config import load_settings, redact_url
    from core.database import resolve_database_url
    from core.preflight import OperatorError
    from store.preflight import check_database
    from indexer import writer
    from store.engine import libpq_url

    settings = load_settings(args.config)
    url = resolve_database_url(settings)
    check_database(url)
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        known = [r[0] for r in conn.execute("SELECT chain FROM indexer_cursor ORDER BY chain")]
        if args.chain not in known:
            raise OperatorError(f"database {redact_url(url)} holds no indexed chain named {args.chain!r} "
                                f"(it holds: {', '.join(known) or 'none'})", "check --chain")
        if not args.yes:
            if not sys.stdin.isatty():
                raise OperatorError(f"reset of chain {args.chain} needs confirmation", "add --yes")
            answer = input(f"delete every indexed row of chain {args.chain} in {redact_url(url)}? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                print("nothing deleted")
                return 1
        counts = writer.reset(conn, args.chain)
    print(f"chain {args.chain}: deleted {sum(counts.values())} rows; `carbonledger index` indexes it again from its "
          f"start block (the oracle's tables were not touched)")
    return 0


def add_reset_command(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("reset", help=cmd_reset.__doc__, description=cmd_reset.__doc__ + " Use it when the node "
                       "behind a chain name is a different chain (a restarted devnet): the indexer refuses to start "
                       "and names this command.")
    s.add_argument("--chain", required=True, help="the configured chain name to forget")
    s.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    s.set_defaults(func=cmd_reset)
