"""Helpers every root resolver uses: the as-of block check and one-query keyset pages."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from typing import Any, TypeVar

import strawberry
from graphql import FieldNode, FragmentSpreadNode, InlineFragmentNode

from gqlapi.errors import ReplicaBehind, UserError
from gqlapi.sql import Order, asof, chain_is, decode_cursor, encode_cursor, page_size, upto
from gqlapi.types.block import BlockInput
from gqlapi.types.pagination import Connection, Edge, PageInfo

T = TypeVar("T")


async def as_of(info: Any, block: BlockInput | None, chain: str | None = None) -> int | None:
    """The block a time-travelling field answers at, refused when the indexer has not reached it."""
    if block is None:
        return None
    number = block.at()
    ctx = info.context
    if ctx.heads is None:
        rows = await ctx.db.fetch("SELECT chain, block_number FROM indexer_cursor")
        ctx.heads = {r["chain"]: int(r["block_number"]) for r in rows}
    heads = {c: n for c, n in ctx.heads.items() if chain is None or c == chain}
    if heads and number > max(heads.values()):
        if ctx.db.on_replica:  # the primary may have it: the endpoint re-asks there
            raise ReplicaBehind(f"block {number} is not replayed on this read replica yet (its latest: "
                                f"{max(heads.values())})")
        raise UserError(f"block {number} is not indexed yet (latest indexed block: {max(heads.values())})")
    return number


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


@dataclass(frozen=True)
class ConnectionSpec:
    """What distinguishes one Relay-connection root field from another: its table, filters, orderings, node.

    `filters(q, where)` adds the filter object's conditions (the chain condition and the as-of-block condition
    are added around them); `node(row, at)` maps a row; `versioned` tables answer with the rows valid at the
    block (`asof`), event tables with the rows at or below it (`upto`)."""

    table: str  # "retirement r": the FROM item and its alias
    filter: type
    order: type[Enum]
    orders: dict[str, tuple[tuple[str, bool], ...]]
    node: type
    filters: Callable[[Query, Any], Any]
    versioned: bool = False
    description: str | None = None

    @property
    def alias(self) -> str:
        return self.table.split()[-1]


def connection_resolver(spec: ConnectionSpec, name: str, module: str) -> Callable[..., Awaitable[Connection[Any]]]:
    """The resolver of `name(where, orderBy, first, after, last, before, block)` for `spec`: one keyset query."""
    a = spec.alias
    select = f"SELECT {a}.*, {{keys}} FROM {spec.table}"
    block_cond = asof if spec.versioned else upto
    takes_block = len(inspect.signature(spec.node.from_row).parameters) > 1
    default_order = next(iter(spec.order))

    async def resolve(info: Any, where: Any = None, order_by: Any = default_order, first: int | None = None,
                      after: str | None = None, last: int | None = None, before: str | None = None,
                      block: BlockInput | None = None) -> Connection[Any]:
        w = where if where is not None else spec.filter()
        at = await as_of(info, block, w.chain)
        q = Query(select)
        q.add(chain_is(a, w.chain, q.params))
        spec.filters(q, w)
        q.where.append(block_cond(a, at, q.params))
        node = (lambda r: spec.node.from_row(r, at)) if takes_block else spec.node.from_row
        return await paginate(info, q, order_of(order_by, spec.orders), first, after, node, last, before)

    P = inspect.Parameter
    kw = P.POSITIONAL_OR_KEYWORD
    params = [
        P("info", kw, annotation=strawberry.Info),
        P("where", kw, default=None, annotation=spec.filter | None),
        P("order_by", kw, default=default_order, annotation=spec.order),
        P("first", kw, default=None, annotation=int | None),
        P("after", kw, default=None, annotation=str | None),
        P("last", kw, default=None, annotation=int | None),
        P("before", kw, default=None, annotation=str | None),
        P("block", kw, default=None, annotation=BlockInput | None),
    ]
    sig = inspect.Signature(params, return_annotation=Connection[spec.node])  # type: ignore[name-defined]
    resolve.__signature__ = sig  # type: ignore[attr-defined]
    resolve.__annotations__ = {**{p.name: p.annotation for p in params}, "return": sig.return_annotation}
    resolve.__name__ = resolve.__qualname__ = name
    resolve.__module__ = module
    resolve.__doc__ = spec.description
    return resolve


def subfields(info: strawberry.Info) -> set[str]:
    """Names of the fields selected directly under this field (through fragments; directives not evaluated, so
    a skipped field may be fetched for nothing, never missed)."""
    raw = info._raw_info
    names: set[str] = set()
    todo = [n.selection_set for n in raw.field_nodes]
    while todo:
        sel = todo.pop()
        if sel is None:
            continue
        for node in sel.selections:
            if isinstance(node, FieldNode):
                names.add(node.name.value)
            elif isinstance(node, InlineFragmentNode):
                todo.append(node.selection_set)
            elif isinstance(node, FragmentSpreadNode):
                frag = raw.fragments.get(node.name.value)
                todo.append(frag.selection_set if frag is not None else None)
    return names
