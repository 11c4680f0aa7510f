"""Custom scalars: uint256 amounts and ids travel as decimal strings (they do not fit a GraphQL Int)."""

from __future__ import annotations

import re
from typing import NewType

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

SCALARS = {
    BigInt: strawberry.scalar(
        name="BigInt",
        description="An integer of any size (uint256 amounts, ids, prices in base units), as a decimal string.",
        serialize=str,
        parse_value=_parse_bigint,
    )
}
