"""SQL fragments shared by the resolvers: as-of-block predicates and keyset pagination."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gqlapi.errors import UserError


def asof(alias: str, block: int | None, params: list[Any]) -> str:
    """Versioned rows valid at `block` (current rows when None)."""
    if block is None:
        return f"{alias}.valid_to IS NULL"
    params.extend([block, block])
    return f"({alias}.valid_from <= %s AND ({alias}.valid_to IS NULL OR {alias}.valid_to > %s))"


# Indexes lead with chain; when a query names no chain, this (an InitPlan, evaluated once) keeps them usable.
INDEXED_CHAINS = "ANY(ARRAY(SELECT chain FROM indexer_cursor))"


def chain_is(alias: str, chain: str | None, params: list[Any]) -> str:
    """`alias.chain = chain`, or every indexed chain when none is named."""
    if chain is None:
        return f"{alias}.chain = {INDEXED_CHAINS}"
    params.append(chain)
    return f"{alias}.chain = %s"


def upto(alias: str, block: int | None, params: list[Any]) -> str:
    """Event rows at or below `block` (all when None)."""
    if block is None:
        return "TRUE"
    params.append(block)
    return f"{alias}.block_number <= %s"


@dataclass(frozen=True)
class Order:
    """An ordering: SQL columns with directions, the last ones unique, so keyset pagination is exact."""

    name: str
    columns: tuple[tuple[str, bool], ...]  # (expression, descending)

    def sql(self) -> str:
        return ", ".join(f"{c} {'DESC' if d else 'ASC'}" for c, d in self.columns)

    def keyset(self, values: Sequence[Any], params: list[Any]) -> str:
        """Rows strictly after `values` in this ordering."""
        if len({d for _, d in self.columns}) == 1:  # one direction: a row comparison the index can use
            op = "<" if self.columns[0][1] else ">"
            params.extend(values)
            cols = ", ".join(c for c, _ in self.columns)
            return f"({cols}) {op} ({', '.join(['%s'] * len(values))})"
        ors = []
        for i, (col, desc) in enumerate(self.columns):
            ands = []
            for j in range(i):
                ands.append(f"{self.columns[j][0]} = %s")
                params.append(values[j])
            ands.append(f"{col} {'<' if desc else '>'} %s")
            params.append(values[i])
            ors.append("(" + " AND ".join(ands) + ")")
        return "(" + " OR ".join(ors) + ")"

    def reversed(self) -> "Order":
        """The same ordering walked backwards (for `last`/`before`)."""
        return Order(self.name, tuple((c, not d) for c, d in self.columns))

    def keys(self, row: dict[str, Any]) -> list[Any]:
        return [row[f"_k{i}"] for i in range(len(self.columns))]

    def select_keys(self) -> str:
        return ", ".join(f"{c} AS _k{i}" for i, (c, _) in enumerate(self.columns))


def encode_cursor(order: Order, values: Sequence[Any]) -> str:
    """Opaque cursor: base64url of JSON [ordering name, key values] (big ints as strings)."""
    vals = [str(v) if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 1 << 53 else v for v in values]
    raw = json.dumps([order.name, vals], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(order: Order, cursor: str, arg: str = "after") -> list[Any]:
    """The key values of a cursor made for `order`, or a clear error."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        name, vals = json.loads(raw)
        assert isinstance(name, str) and isinstance(vals, list) and len(vals) == len(order.columns)
        assert all(isinstance(v, (int, str)) and not isinstance(v, bool) for v in vals)
    except Exception:  # noqa: BLE001 - any decoding failure is the same client mistake
        raise UserError(f"{arg}: malformed cursor (pass a cursor from a previous page)") from None
    if name != order.name:
        raise UserError(f"{arg}: this cursor belongs to orderBy {name}, not {order.name}")
    return vals


def page_size(first: int | None, default: int, maximum: int, arg: str = "first") -> int:
    """Validate `first` (or `last`) against the configured maximum page size."""
    if first is None:
        return min(default, maximum)
    if first < 0:
        raise UserError(f"{arg} must be ≥ 0")
    if first > maximum:
        raise UserError(f"{arg} must be ≤ {maximum} (the maximum page size); got {first}")
    return first
