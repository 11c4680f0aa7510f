"""`carbonledger oracle run|anchor`."""

from __future__ import annotations

import argparse


def _settings(args: argparse.Namespace):  # noqa: ANN202
    from core.config import load_settings

    return load_settings(args.config)


def cmd_run(args: argparse.Namespace) -> int:
    """Serve the ingress, run the sender and the scheduled jobs until SIGTERM."""
    from core.config import ConfigError
    from core.database import resolve_database_url
    from core.logs import setup_logging
    from chains.preflight import check_rpc
    from core.preflight import check_port, ensure
    from store.preflight import check_database
    from oracle.runtime import Oracle
    from oracle.signer import load_signer

    s = _settings(args)
    setup_logging(s.log_level)
    load_signer(s.oracle)  # no key, or a bad one: say so before anything starts
    if not s.chains:
        raise ConfigError("no chains configured: the oracle needs [chains.<name>] with rpc_url and contracts")
    chain = s.oracle.chain or next(iter(s.chains))
    url = resolve_database_url(s)
    ensure([("database", lambda: check_database(url, writable=True)), (f"chain {chain}", lambda: check_rpc(chain, s.chains[chain])),
            ("port", lambda: check_port(s.oracle.host, s.oracle.port, "oracle.port"))], wait=args.wait)
    return Oracle(s, url).run()


def cmd_anchor(args: argparse.Namespace) -> int:
    """Anchor pending IoT readings now (one Merkle root); the running oracle sends it."""
    from psycopg_pool import ConnectionPool

    from core.database import resolve_database_url
    from oracle.records import anchor_pending
    from store.engine import libpq_url

    s = _settings(args)
    with ConnectionPool(libpq_url(resolve_database_url(s)), min_size=1, max_size=1) as pool:
        key = anchor_pending(pool, s.oracle.chain or next(iter(s.chains)), s.oracle.anchor_max_leaves)
    print(key or "nothing to anchor")
    return 0


def add_oracle_command(sub: argparse._SubParsersAction) -> None:
    what = "The signing oracle: payments, IoT readings, settlements and approvals become chain writes, exactly once."
    p = sub.add_parser("oracle", help=what, description=what)
    osub = p.add_subparsers(dest="oracle_command", required=True)
    r = osub.add_parser("run", help=cmd_run.__doc__)
    r.add_argument("--wait", action="store_true", help="at start, keep retrying an unreachable database or node "
                   "(one log line per change, backoff to 30 s) instead of failing at once")
    r.set_defaults(func=cmd_run)
    a = osub.add_parser("anchor", help=cmd_anchor.__doc__)
    a.set_defaults(func=cmd_anchor)
