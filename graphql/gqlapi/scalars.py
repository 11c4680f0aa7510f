"""Custom scalars: uint256 amounts and ids travel as decimal strings (they do not fit a GraphQL Int)."""

from __future__ import annotations

from typing import NewType

import strawberry

from gqlapi.errors import UserError


def _parse_bigint(value: object) -> int:
    if isinstance(value, bool):
        raise UserError("BigInt: expected a decimal string")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit() and len(value) <= 80:
        return int(value)
    raise UserError(f"BigInt: expected a decimal string, got {str(value)[:40]!r}")


BigInt = NewType("BigInt", int)

SCALARS = {
    BigInt: strawberry.scalar(
        name="BigInt",
        description="An integer of any size (uint256 amounts, ids, prices in base units), as a decimal string.",
        serialize=str,
        parse_value=_parse_bigint,
    )
}
