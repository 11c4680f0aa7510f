"""The auditor's commands: `carbonledger verify certificate|reading|payment` and `carbonledger certificate`.

They need a node and the contract addresses, never our database: `--rpc URL --contract CarbonCredit=0x…
--contract Marketplace=0x…` (what the GraphQL field `Certificate.verification` and the printed certificate give),
or `--chain NAME` to take them from the config. Exit 0 when every check holds, 1 when one fails, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

NEEDS = {"certificate": ("CarbonCredit", "Marketplace"), "reading": ("IoTAnchor",),
         "payment": ("Marketplace", "Escrow")}
USES = {"CarbonCredit": ("Auction",), "Marketplace": ("Auction",)}  # followed too when their address is known
# (a deployment older than the Auction contract has none: its certificates never went through an auction)


def _contracts(values: list[str]) -> dict[str, str]:
    from core.preflight import OperatorError

    out = {}
    for v in values:
        name, sep, address = v.partition("=")
        if not sep or not address.startswith("0x") or len(address) != 42:
            raise OperatorError(f"--contract {v!r} is not NAME=0xADDRESS", "e.g. --contract CarbonCredit=0x5FbD…0aa3")
        out[name] = address
    return out


def open_reader(args: argparse.Namespace, need: tuple[str, ...]) -> tuple[Any, dict[str, str], int, int]:
    """(reader, contract addresses, first block to scan, finality depth) from --chain/--rpc/--contract/--from-block."""
    from core.config import ChainSettings, ConfigError, load_settings
    from core.preflight import OperatorError
    from indexer.runner import chain_reader

    settings = load_settings(args.config)
    given = _contracts(args.contract)
    name = args.chain or (next(iter(settings.chains)) if len(settings.chains) == 1 and not given else "audited")
    base = settings.chains.get(name)
    if base is None and not args.rpc:
        raise OperatorError(f"no chain {name!r} in the config and no --rpc",
                            "pass --rpc URL and the contract addresses (--contract CarbonCredit=0x…), or --chain NAME")
    data = base.model_dump(exclude={"contracts"}) if base is not None else {"use_finalized_tag": False}
    contracts = {n: c.model_dump() for n, c in (base.contracts.items() if base is not None else ())}
    for n, address in given.items():
        contracts[n] = {"address": address, "start_block": 0}
    if args.rpc:
        data["rpc_url"] = args.rpc
    if args.family:  # a node of another family, named without a config (what Certificate.verification prints)
        data["family"] = args.family
    if args.package:
        data["aptos_package"] = args.package
    try:
        cs = ChainSettings.model_validate({**data, "contracts": contracts})
    except ValueError as exc:
        raise ConfigError(str(exc).splitlines()[-1] if str(exc) else "bad chain settings") from None
    args.family, args.package = cs.family, cs.aptos_package  # what the printed certificate's command names
    if cs.family == "evm":
        from chains.evm.deploy import resolved_contracts

        have = resolved_contracts(cs, name)
        missing = [n for n in need if n not in have]
        if missing:
            raise OperatorError(f"no address for {', '.join(missing)}",
                                f"pass --contract {missing[0]}=0x… (or a --chain whose config has it)")
        also = {u for n in need for u in USES.get(n, ())}
        cs = cs.model_copy(update={"contracts": {n: c for n, c in have.items() if n in need or n in also},
                                   "markets": [],  # verify reads the protocol's own contracts only
                                   "deployment": None})
    reader, addresses, start = chain_reader(name, cs)
    first = args.from_block if args.from_block is not None else start
    return reader, addresses, first, cs.finality_depth


def _emit(args: argparse.Namespace, report: Any) -> int:
    from carbonledger.verify import render

    if args.json:
        print(json.dumps(report.to_json(), indent=2, default=str))
    else:
        render(report)
    return 0 if report.ok else 1


def cmd_verify_certificate(args: argparse.Namespace) -> int:
    """Rebuild a certificate's custody chain from the chain alone; with --api, check the API agrees."""
    from carbonledger.verify import verify_certificate

    reader, addresses, first, depth = open_reader(args, NEEDS["certificate"])
    report = verify_certificate(reader, args.id, from_block=first, market=addresses.get("Marketplace"),
                                auction=addresses.get("Auction"), finality_depth=depth, api_url=args.api,
                                api_chain=args.api_chain)
    return _emit(args, report)


def cmd_verify_reading(args: argparse.Namespace) -> int:
    """Recompute a reading's leaf (RFC 8785), walk its Merkle proof and ask IoTAnchor.verify on chain."""
    from carbonledger.verify import verify_reading
    from core.preflight import OperatorError

    src = args.reading
    if Path(src).is_file():
        if Path(src).stat().st_size > 1 << 20:
            raise OperatorError(f"{src} is larger than 1 MiB", "pass the JSON of GET /iot/readings/{id}/proof")
        try:
            proof = json.loads(Path(src).read_text())
        except ValueError as exc:
            raise OperatorError(f"{src} is not JSON ({exc})", "pass the JSON of GET /iot/readings/{id}/proof") from None
    elif src.isdigit():
        import httpx

        if not args.oracle:
            raise OperatorError("a reading id needs the oracle's address", "pass --oracle URL, or a JSON file")
        r = httpx.get(f"{args.oracle.rstrip('/')}/iot/readings/{int(src)}/proof", timeout=30)
        if r.status_code != 200:
            raise OperatorError(f"the oracle answered {r.status_code} for reading {src}", "check the id and --oracle URL")
        proof = r.json()
    else:
        raise OperatorError(f"{src!r} is neither a reading id nor a file", "pass an id (with --oracle URL) or a JSON file")
    if not isinstance(proof, dict):
        raise OperatorError("the reading is not a JSON object", "pass the JSON of GET /iot/readings/{id}/proof")
    reader, addresses, first, depth = open_reader(args, NEEDS["reading"])
    return _emit(args, verify_reading(reader, proof, addresses["IoTAnchor"], from_block=first, finality_depth=depth))


def cmd_verify_payment(args: argparse.Namespace) -> int:
    """Find the on-chain write that used a payment reference and check it was written exactly once."""
    from carbonledger.verify import verify_payment

    reader, _, first, depth = open_reader(args, NEEDS["payment"])
    return _emit(args, verify_payment(reader, args.reference, from_block=first, finality_depth=depth))


def cmd_certificate(args: argparse.Namespace) -> int:
    """Print a retirement certificate (HTML, for a browser's print-to-PDF) from the chain alone, with a QR code
    carrying the command that verifies it."""
    from carbonledger.certificate import render_html
    from carbonledger.verify import verify_certificate
    from core.preflight import OperatorError

    out = Path(args.out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise OperatorError(f"--out {out}: only HTML is written", "use --out cert.html and print it to PDF from a browser")
    reader, addresses, first, depth = open_reader(args, NEEDS["certificate"])
    report = verify_certificate(reader, args.id, from_block=first, market=addresses.get("Marketplace"),
                                auction=addresses.get("Auction"), finality_depth=depth)
    if not any(c.name == "found" and c.ok for c in report.checks):
        raise OperatorError(f"certificate {args.id} is not on the node's chain", "check the id, --rpc and the contracts")
    out.write_text(render_html(report, addresses, first, family=args.family or "evm", package=args.package))
    print(f"certificate {args.id}: {out} ({'verified' if report.ok else 'NOT verified: see the page'})")
    return 0 if report.ok else 1


def _source_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rpc", help="the node's JSON-RPC URL (default: the chain's rpc_url in the config)")
    p.add_argument("--chain", help="a chain of the config to take the node and contracts from")
    p.add_argument("--contract", action="append", default=[], metavar="NAME=0xADDRESS",
                   help="a protocol contract's address (CarbonCredit, Marketplace, Escrow, IoTAnchor); repeatable")
    p.add_argument("--family", choices=("evm", "substrate", "aptos"),
                   help="the node's chain family when no config names it (default: evm)")
    p.add_argument("--package", metavar="0xADDRESS", help="aptos: the account the protocol's Move package is published at")
    p.add_argument("--from-block", type=int, help="first block to scan (default: the contracts' start block, else 0; "
                   "aptos: a version)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def add_audit_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `verify` (certificate, reading, payment) and `certificate` on the carbonledger command."""
    what = "Check a certificate, IoT reading or payment from the chain alone (no database)."
    v = sub.add_parser("verify", help=what, description=what)
    vs = v.add_subparsers(dest="what", required=True)
    c = vs.add_parser("certificate", help=cmd_verify_certificate.__doc__)
    c.add_argument("id", type=int, help="the on-chain certificate id")
    c.add_argument("--api", help="also compare with this GraphQL API (http://host:port); differences fail")
    c.add_argument("--api-chain", help="the chain's name in that API (default: let the API find the certificate)")
    _source_options(c)
    c.set_defaults(func=cmd_verify_certificate)
    r = vs.add_parser("reading", help=cmd_verify_reading.__doc__)
    r.add_argument("reading", help="a reading id (with --oracle) or a JSON file as GET /iot/readings/{id}/proof gives")
    r.add_argument("--oracle", help="the oracle's URL, to fetch a reading's proof by id")
    _source_options(r)
    r.set_defaults(func=cmd_verify_reading)
    p = vs.add_parser("payment", help=cmd_verify_payment.__doc__)
    p.add_argument("reference", help="the payment reference (e.g. a Stripe PaymentIntent id or M-Pesa receipt)")
    _source_options(p)
    p.set_defaults(func=cmd_verify_payment)
    cert = sub.add_parser("certificate", help=cmd_certificate.__doc__)
    cert.add_argument("id", type=int, help="the on-chain certificate id")
    cert.add_argument("--out", required=True, help="where to write the certificate (.html)")
    _source_options(cert)
    cert.set_defaults(func=cmd_certificate)
