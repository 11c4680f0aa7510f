"""Column types. uint256 lives in NUMERIC(78,0) and comes back as a Python int: no float touches an amount."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from sqlalchemy import BigInteger, Numeric, String, Text
from sqlalchemy.types import TypeDecorator


class Uint256Type(TypeDecorator[int]):
    """NUMERIC(78,0) <-> int (78 digits hold 2**256-1)."""

    impl = Numeric(78, 0)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, float):
            raise TypeError("uint256 values must be int, never float")
        v = int(value)
        if v < 0 or v >= 1 << 256:
            raise ValueError(f"{v} does not fit uint256")
        return Decimal(v)

    def process_result_value(self, value: Any, dialect: Any) -> int | None:
        return None if value is None else int(value)


uint256 = Annotated[int, "uint256"]
int64 = Annotated[int, "int64"]
hexstr = Annotated[str, "hexstr"]  # lowercase 0x-hex: addresses, hashes
text = Annotated[str, "text"]

TYPE_ANNOTATION_MAP: dict[Any, Any] = {
    uint256: Uint256Type(),
    int64: BigInteger(),
    hexstr: String(66),
    text: Text(),
    str: Text(),
    int: BigInteger(),
}
