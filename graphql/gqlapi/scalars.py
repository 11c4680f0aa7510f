"""Custom scalars: uint256 amounts and ids travel as decimal strings (they do not fit a GraphQL Int); times as
64-bit unix seconds (a GraphQL Int is 32-bit: it ends in January 2038, and an auction's end or an anchor's window
is whatever a chain user wrote, so one far-future value would make a whole list unanswerable)."""

from __future__ import annotations

import re
from typing import Any, NewType

import strawberry

from gqlapi.errors import UserError


_DECIMAL = re.compile(r"-?[0-9]{1,80}")


def _parse_bigint(value: object) -> int:
    if isinstance(value, bool):
        raise UserError("BigInt: expected a decimal string")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):  # ASCII digits only: int() takes "١٢" too
        return int(value)
    raise UserError(f"BigInt: expected a decimal string, got {str(value)[:40]!r}")


BigInt = NewType("BigInt", int)
Timestamp = NewType("Timestamp", int)
BlockNumber = NewType("BlockNumber", int)
_INT64_END = 2**63


def _int64(name: str, what: str, description: str) -> Any:
    """A 64-bit integer scalar: out as a JSON number (exact in every client up to 2**53); in, 0..2**63 - 1 from a JSON
    number or a decimal string, anything else refused by `name`."""

    def parse(value: object) -> int:
        v: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            v = value
        elif isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
            v = int(value)
        if v is None or not 0 <= v < _INT64_END:
            raise UserError(f"{name}: expected {what}, an integer from 0 to 2**63 - 1, got {str(value)[:40]!r}")
        return v

    return strawberry.scalar(name=name, description=description, serialize=int, parse_value=parse)


SCALARS = {
    BigInt: strawberry.scalar(
        name="BigInt",
        description="An integer of any size (uint256 amounts, ids, prices in base units), as a decimal string.",
        serialize=str,
        parse_value=_parse_bigint,
    ),
    Timestamp: _int64("Timestamp", "unix seconds", "Unix seconds as a JSON number; 64-bit (a GraphQL Int ends in "
                      "2038). Inputs take a number or a decimal string."),
    BlockNumber: _int64("BlockNumber", "a block number", "A block number as a JSON number, 64-bit: an Aptos chain's "
                        "blocks are its ledger versions, past 2**31 on mainnet, where a GraphQL Int stops."),
}
