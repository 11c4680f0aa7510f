"""The command line that checks a certificate from a node alone (stdlib only: the API's `Certificate.verification`
field and the printed certificate both show it, and they must agree)."""

from __future__ import annotations

from collections.abc import Mapping


def verify_command(cert_id: int, addresses: Mapping[str, str], from_block: int = 0, rpc: str = "RPC_URL", *,
                   family: str = "evm", package: str | None = None) -> str:
    """`carbonledger verify certificate ID --rpc RPC_URL --contract CarbonCredit=0x… --contract Marketplace=0x… …`;
    on an Aptos chain `--family aptos --package 0x…` instead of contract addresses (the package names them all)."""
    parts = [f"carbonledger verify certificate {cert_id} --rpc {rpc}"]
    if family != "evm":
        parts.append(f"--family {family}")
    if package:
        parts.append(f"--package {package}")
    if family == "evm":
        parts += [f"--contract {n}={addresses[n]}" for n in ("CarbonCredit", "Marketplace", "Auction") if n in addresses]
    if from_block:
        parts.append(f"--from-block {from_block}")
    return " ".join(parts)
