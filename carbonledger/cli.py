"""The `carbonledger` command: one entry point, one sub-command per job."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

# Nothing slow is imported at module level: main() installs the SIGTERM handler before anything else runs.
if TYPE_CHECKING:
    from core.config import Settings

log = logging.getLogger("carbonledger")


def _settings(args: argparse.Namespace) -> Settings:
    from core.config import load_settings

    return load_settings(args.config)


def cmd_devnet(args: argparse.Namespace) -> int:
    """Serve an in-process eth-tester chain over JSON-RPC until Ctrl-C."""
    import time

    from core.devnet import DEVNET_ACCOUNTS, DevnetServer

    server = DevnetServer(host=args.host, port=args.port).start()
    print(f"devnet (eth-tester) on {server.url}  chain id {server.devnet.chain_id}")
    print("funded accounts (anvil's public devnet keys):")
    for a in DEVNET_ACCOUNTS:
        print(f"  {a}")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    """Deploy the six protocol contracts and write deployments/<chain>.json."""
    import time

    from eth_account import Account
    from web3 import Web3

    from core.config import ConfigError, redact_url
    from core.devnet import DEVNET_KEYS
    from core.preflight import OperatorError
    from core.secrets import private_key_from_env
    from chains.evm.deploy import deploy_protocol

    w3 = Web3(Web3.HTTPProvider(args.rpc, request_kwargs={"timeout": 60}))
    deadline = time.monotonic() + (120 if args.wait else 0)
    while not w3.is_connected():
        if time.monotonic() >= deadline:
            raise OperatorError(f"no JSON-RPC node answers at {redact_url(args.rpc, path=True)}",
                                "start the node (e.g. `carbonledger devnet`), check --rpc, or add --wait")
        time.sleep(0.5)
    key = private_key_from_env("CARBONLEDGER_DEPLOYER_KEY")
    if key is None:
        if not args.devnet_key:
            raise ConfigError("set CARBONLEDGER_DEPLOYER_KEY (hex private key) or pass --devnet-key for a local devnet")
        account = Account.from_key(DEVNET_KEYS[0])
    else:
        account = Account.from_key(key.reveal())
    roles = {r: list(getattr(args, r.lower())) or [account.address] for r in ("ISSUER", "ORACLE", "SETTLER", "ARBITER")}
    dep = deploy_protocol(w3, account, roles={f"{k}_ROLE": v for k, v in roles.items()})
    out = Path(args.out or f"deployments/{args.chain}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    dep.write(out)
    for name, c in dep.contracts.items():
        print(f"{name:13s} {c.address}  block {c.block_number}")
    print(f"wrote {out}")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    """Bring the database schema to the newest revision."""
    from core.database import resolve_database_url
    from store.preflight import check_database
    from store.migrate import current, upgrade

    url = resolve_database_url(_settings(args))
    check_database(url, migrated=False, writable=True)
    upgrade(url)
    print(f"database at revision {current(url)}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    """Validate the config and print it (secrets hidden)."""
    from chains.base import load_family

    s = _settings(args)
    for chain, c in s.chains.items():  # what the daemons would refuse, refused here too (no node asked)
        load_family(c.family).reader.check_settings(chain, c)
    import json

    from core.config import redact_url

    dumped = s.model_dump(mode="json")  # SecretStr fields dump as ********; a database URL may hold a password
    if dumped["database"]["url"]:
        dumped["database"]["url"] = redact_url(dumped["database"]["url"])
    dumped["database"]["read_url"] = [redact_url(u) for u in s.database.read_urls]
    if dumped["api"].get("live_listen_url"):
        dumped["api"]["live_listen_url"] = redact_url(dumped["api"]["live_listen_url"])
    for chain in dumped["chains"].values():  # provider URLs carry API keys in their paths
        for key in ("rpc_url", "ws_url"):
            if chain.get(key):
                chain[key] = redact_url(chain[key], path=not chain[key].startswith(("http://127.", "http://localhost")))
    print(json.dumps(dumped, indent=2))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Run everything on embedded defaults and tell the marketplace story end to end."""
    import time

    from carbonledger.demo import Demo, print_report

    from core.preflight import check_port

    if not getattr(args, "verbose", False):
        logging.getLogger().setLevel(logging.WARNING)  # the story is the output; -v shows the daemons' log lines
    check_port("127.0.0.1", args.api_port, "--api-port")  # before anything is started or deployed
    check_port("127.0.0.1", args.oracle_port, "--oracle-port")
    demo = Demo(database_url=args.database_url, rpc_url=args.rpc, api_port=args.api_port, oracle_port=args.oracle_port,
                database_name=args.database_name)
    try:
        print("starting: embedded Postgres, devnet chain, contracts, indexer, oracle, API ...", flush=True)
        demo.start()
        story = demo.story()
        print_report(demo, story)
        if not args.no_serve:
            print("serving until Ctrl-C", flush=True)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        demo.stop()
    return 0


CONFIG_HELP = "TOML config (default: $CARBONLEDGER_CONFIG or ./carbonledger.toml)"
VERBOSE_HELP = "on errors, also print the traceback (demo: also show the daemons' log lines)"


class _Help(argparse.HelpFormatter):
    """Shows each option's default, unless its help already says it or there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not text or "default" in text or action.default in (None, False, [], argparse.SUPPRESS):
            return text
        return text + " (default: %(default)s)"


def _common_options(parser: argparse.ArgumentParser) -> None:
    """--config and -v on every sub-command too (`carbonledger index -v --config x.toml`), without overriding
    what was given before the sub-command; each sub-command's --help describes it and shows every default."""
    parser.formatter_class = _Help
    func = parser.get_default("func")
    if parser.description is None and func is not None and func.__doc__:
        parser.description = func.__doc__.strip()
    parser.add_argument("--config", "-c", default=argparse.SUPPRESS, help=CONFIG_HELP)
    parser.add_argument("--verbose", "-v", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _common_options(child)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="carbonledger", description=__doc__, formatter_class=_Help)
    p.add_argument("--config", "-c", help=CONFIG_HELP)
    p.add_argument("--verbose", "-v", action="store_true", help=VERBOSE_HELP)
    from carbonledger import __version__

    p.add_argument("--version", action="version", version=f"carbonledger {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("devnet", help=cmd_devnet.__doc__)
    s.add_argument("--host", default="127.0.0.1", help="bind address")
    s.add_argument("--port", type=int, default=8545, help="JSON-RPC port")
    s.set_defaults(func=cmd_devnet)

    s = sub.add_parser("deploy", help=cmd_deploy.__doc__)
    s.add_argument("--rpc", required=True, help="JSON-RPC URL")
    s.add_argument("--chain", default="devnet", help="chain name, used for deployments/<chain>.json")
    s.add_argument("--out", help="output path (default deployments/<chain>.json)")
    s.add_argument("--devnet-key", action="store_true", help="deploy with anvil's public account #0 (devnets only)")
    s.add_argument("--wait", action="store_true", help="wait up to 2 minutes for the node to answer")
    for role in ("issuer", "oracle", "settler", "arbiter"):
        s.add_argument(f"--{role}", action="append", default=[], metavar="ADDRESS", help=f"grant {role.upper()}_ROLE (default: deployer)")
    s.set_defaults(func=cmd_deploy)

    s = sub.add_parser("migrate", help=cmd_migrate.__doc__)
    s.set_defaults(func=cmd_migrate)

    s = sub.add_parser("config", help=cmd_config.__doc__)
    s.set_defaults(func=cmd_config)
    s = sub.add_parser("demo", help=cmd_demo.__doc__)
    s.add_argument("--database-url", help="Postgres server to create the demo database on (default: embedded)")
    s.add_argument("--database-name", default="carbonledger_demo",
                   help="name of the demo database (dropped and created afresh)")
    s.add_argument("--rpc", help="JSON-RPC URL of a devnet (default: an in-process eth-tester chain)")
    s.add_argument("--api-port", type=int, default=8080, help="port of the GraphQL API (0: any free port)")
    s.add_argument("--oracle-port", type=int, default=8081, help="port of the oracle's ingress (0: any free port)")
    s.add_argument("--no-serve", action="store_true", help="tell the story, print, and exit (for scripts and CI)")
    s.set_defaults(func=cmd_demo)

    from carbonledger.audit import add_audit_commands
    from carbonledger.report import add_report_commands
    from gqlapi.cli import add_serve_command
    from indexer.cli import add_index_command, add_reset_command
    from oracle.cli import add_oracle_command

    add_index_command(sub)
    add_reset_command(sub)
    add_oracle_command(sub)
    add_serve_command(sub)
    add_audit_commands(sub)
    add_report_commands(sub)
    for child in sub.choices.values():
        _common_options(child)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one sub-command. Every failure is one line, `carbonledger: <what failed> — <how to fix it>`, and a
    non-zero exit (2: config, 3: reorg deeper than finality, 1: anything else); -v adds the traceback."""
    from core.shutdown import REQUESTED, StopRequested, install_early

    install_early()  # first: a SIGTERM during start-up is a clean exit 0, not death by signal
    args = None
    try:
        from core.config import ConfigError
        from core.logs import setup_logging
        from core.preflight import OperatorError

        args = build_parser().parse_args(argv)
        setup_logging()
        try:
            return int(args.func(args) or 0)
        except ConfigError as err:
            return _fail(args, f"config error: {err} — fix that key in the config file or the environment", 2)
        except OperatorError as err:
            return _fail(args, str(err))
    except StopRequested:
        print("carbonledger: stopped (SIGTERM) before start-up finished", file=sys.stderr)
        return 0
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - the last resort: still one line, the traceback on -v
        if REQUESTED.is_set():
            # The stop's own doing: its StopRequested became another error where it was raised (CPython turns an
            # exception raised inside compile() into "SystemError: AST constructor recursion depth mismatch";
            # a library may wrap it), or something swallowed it and failed for want of what it interrupted.
            print("carbonledger: stopped (SIGTERM) before start-up finished", file=sys.stderr)
            return 0
        return _fail(args, _describe(exc))


def _fail(args: argparse.Namespace | None, line: str, code: int = 1) -> int:
    import traceback

    print(f"carbonledger: {line}", file=sys.stderr)
    if args is not None and getattr(args, "verbose", False):
        traceback.print_exc()
    return code


def _describe(exc: BaseException) -> str:
    """One line for an error no command turned into an OperatorError: what failed and the likeliest fix."""
    import errno

    name = type(exc).__name__
    first = (str(exc).strip().splitlines() or [name])[-1].strip()[:300]
    module = type(exc).__module__
    if module.startswith("psycopg"):
        if "UndefinedTable" in name or "UndefinedColumn" in name:
            return f"the database is missing carbonledger's tables ({first}) — run `carbonledger migrate`"
        return f"database error: {first} — check that Postgres is up and database.url / CARBONLEDGER_DATABASE_URL"
    if module.startswith("sqlalchemy") and "OperationalError" in name:
        return f"database error: {first} — check that Postgres is up and database.url / CARBONLEDGER_DATABASE_URL"
    if name in ("RpcError", "RpcTransportError"):
        return f"JSON-RPC node error: {first} — check that the node is up and chains.<name>.rpc_url"
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return f"a port is already in use ({first}) — stop what uses it or choose another port"
    return f"unexpected error: {name}: {first} — rerun with -v for the traceback, and please report it"


if __name__ == "__main__":
    sys.exit(main())
