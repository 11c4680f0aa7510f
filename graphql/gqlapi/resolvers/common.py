"""Helpers every root resolver uses: the as-of block check and one-query keyset pages."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeVar

from gqlapi.errors import UserError
from gqlapi.sql import Order, decode_cursor, encode_cursor, page_size
from gqlapi.types.block import BlockInput
from gqlapi.types.pagination import Connection, Edge, PageInfo

T = TypeVar("T")


async def as_of(info: Any, block: BlockInput | None, chain: str | None = None) -> int | None:
    """The block a time-travelling field answers at, refused when the indexer has not reached it."""
    if block is None:
        return None
    if block.number < 0:
        raise UserError("block.number must be ≥ 0")
    ctx = info.context
    if ctx.heads is None:
        rows = await ctx.db.fetch("SELECT chain, block_number FROM indexer_cursor")
        ctx.heads = {r["chain"]: int(r["block_number"]) for r in rows}
    heads = {c: n for c, n in ctx.heads.items() if chain is None or c == chain}
    if heads and block.number > max(heads.values()):
        raise UserError(f"block {block.number} is not indexed yet (latest indexed block: {max(heads.values())})")
    return block.number


def _plain(v: Any) -> Any:
    return int(v) if isinstance(v, Decimal) else v


class Query:
    """A SELECT being built: FROM clause, AND-ed conditions and their parameters, in order."""

    def __init__(self, select: str) -> None:
        self.select = select
        self.where: list[str] = []
        self.params: list[Any] = []

    def add(self, cond: str, *params: Any) -> "Query":
        self.where.append(cond)
        self.params.extend(params)
        return self

    def when(self, value: Any, cond: str) -> "Query":
        """Add `cond` (with one %s) when the filter value is given."""
        if value is not None:
            self.add(cond, value)
        return self

    def sql_where(self) -> str:
        return " AND ".join(self.where) or "TRUE"


async def paginate(info: Any, q: Query, order: Order, first: int | None, after: str | None,
                   node: Callable[[dict[str, Any]], T], last: int | None = None, before: str | None = None) -> Connection[T]:
    """One query: filters, keyset after/before the cursors, ORDER BY, LIMIT n+1 (to learn if more exist).

    Forward (`first`/`after`) is the default; `last`/`before` walk the same ordering backwards and return the
    page in forward order, as Relay specifies."""
    limits = info.context.limits
    if first is not None and last is not None:
        raise UserError("pass `first` or `last`, not both")
    backward = last is not None or (before is not None and first is None)
    n = page_size(last if backward else first, limits.default_page_size, limits.max_page_size, "last" if backward else "first")
    if after is not None:
        q.where.append(order.keyset(decode_cursor(order, after, "after"), q.params))
    if before is not None:
        q.where.append(order.reversed().keyset(decode_cursor(order, before, "before"), q.params))
    walk = order.reversed() if backward else order
    sql = f"{q.select.replace('{keys}', order.select_keys())} WHERE {q.sql_where()} ORDER BY {walk.sql()} LIMIT %s"
    rows = await info.context.db.fetch(sql, [*q.params, n + 1])
    more = len(rows) > n
    rows = rows[:n]
    if backward:
        rows.reverse()
    edges = [Edge(cursor=encode_cursor(order, [_plain(v) for v in order.keys(r)]), node=node(r)) for r in rows]
    return Connection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=(before is not None) if backward else more,
            has_previous_page=more if backward else after is not None,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        ),
    )


def order_of(enum_value: Any, table: dict[str, tuple[tuple[str, bool], ...]]) -> Order:
    return Order(enum_value.name, table[enum_value.name])
