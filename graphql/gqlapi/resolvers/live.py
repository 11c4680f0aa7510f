"""The live subscriptions (graphql-transport-ws and SSE): blocks, orderStatusChanged, portfolioChanged,
certificateIssued, tradeExecuted, intentStatusChanged.

Every stream follows one recipe (gqlapi.live explains the notices):
1. subscribe to the process's hub first, so nothing committed from now on can be missed (notices buffer);
2. with `since: {number}`, read what the subscriber missed (rows above that block) from the event tables and
   versioned rows in one snapshot, and remember the snapshot;
3. then take notices in order, skipping those whose transaction the snapshot already saw: no gap, no duplicate.
A block notice is turned into rows by one query per stream and notice shared by all subscribers (`Hub.shared`), then
each subscriber keeps the rows its filter matches. A reorg notice becomes `Retracted` for a subscriber that was sent
something in the undone blocks (always, on `blocks`).

Read replicas (gqlapi.replicas): the hub listens on the primary (NOTIFY is not replicated). A notice's rows are read
on a replica only in a snapshot that saw the notice's transaction (`after`: waits while the replica replays it, at
most database.replica_max_lag_s, then reads the primary), so no message is sent before its data is readable where
it is read. History (step 2) is read on the primary: its snapshot must see every commit whose notice came before
the subscription, which a lagging replica's might not (that would be a silent gap).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any

import strawberry

from core.ratelimit import client_from_scope
from gqlapi.convert import address_arg, hash_arg, uint_arg
from gqlapi.errors import UserError
from gqlapi.live import LimitReached, LiveClosed, Snapshot
from gqlapi.scalars import BigInt
from gqlapi.types.live import (BlockIndexed, BlockMessage, CertificateIssued, CertificateMessage, IntentStatusChanged,
                               LiveBlock, OrderStatusChanged, OrderStatusMessage, PortfolioChanged, PortfolioMessage,
                               Retracted, SinceInput, TradeExecuted, TradeMessage,
                               AuctionChanged, AuctionMessage)
from gqlapi.types.meta import ChainMeta

_META_SQL = (
    "SELECT c.chain, c.block_number, c.block_hash, c.finalized_number, ib.timestamp AS block_timestamp, "
    "(SELECT count(*) FROM indexing_error e WHERE e.chain = c.chain) AS errors FROM indexer_cursor c "
    "LEFT JOIN indexed_block ib ON ib.chain = c.chain AND ib.number = c.block_number WHERE c.chain = %(chain)s")


@dataclass(frozen=True)
class Stream:
    """Where a stream's rows come from: `select` (alias e) with `block` the row's block column."""

    name: str
    kinds: frozenset[str]
    select: str
    block: str
    hashed: bool  # rows carry block_hash (event tables); versions do not
    make: Callable[[dict[str, Any]], Any]
    key: str = "e.owner, e.batch_id"  # versions: their order within a block

    @property
    def order(self) -> str:
        return "e.log_index" if self.hashed else self.key

    def range_sql(self) -> str:
        """Rows of blocks lo..hi of one chain; those of block hi only on the branch whose hash the notice names."""
        same = f" AND (e.{self.block} < %(hi)s OR e.block_hash = %(hash)s)" if self.hashed else ""
        return (f"{self.select} WHERE e.chain = %(chain)s AND e.{self.block} BETWEEN %(lo)s AND %(hi)s{same} "
                f"ORDER BY e.{self.block}, {self.order}")

    def history_sql(self, where: str = "TRUE") -> str:
        """Rows above block `lo` that match `where` (the subscription's own filter, so the replay limit counts only
        the messages this subscriber would be sent)."""
        return (f"{self.select} WHERE (%(chain)s::text IS NULL OR e.chain = %(chain)s) AND e.{self.block} > %(lo)s "
                f"AND ({where}) "
                f"ORDER BY e.chain, e.{self.block}, {self.order} "
                "LIMIT %(limit)s")


ORDERS = Stream(
    "orders", frozenset({"order_event"}),
    "SELECT e.chain, e.order_id, e.event, e.actor, e.payment_ref, e.tx_hash, e.log_index, e.block_number, "
    "e.block_hash, o.buyer, o.seller FROM order_event e LEFT JOIN escrow_order o ON o.chain = e.chain "
    "AND o.order_id = e.order_id AND o.valid_to IS NULL", "block_number", True, OrderStatusChanged.from_row)
HOLDINGS = Stream(
    "holdings", frozenset({"holding"}),
    "SELECT e.chain, e.owner, e.batch_id, e.tradable, e.listed, e.retired, e.valid_from AS block_number, "
    "NULL::text AS block_hash FROM holding e", "valid_from", False, PortfolioChanged.from_row)
CERTIFICATES = Stream(
    "certificates", frozenset({"retirement"}),
    "SELECT e.chain, e.certificate_id, e.holder, e.batch_id, e.amount, e.beneficiary, e.reason, e.tx_hash, "
    "e.log_index, e.block_number, e.block_hash FROM retirement e", "block_number", True, CertificateIssued.from_row)
TRADES = Stream(
    "trades", frozenset({"trade"}),
    "SELECT e.chain, e.listing_id, e.auction_id, e.buyer, e.seller, e.batch_id, e.amount, e.price_per_unit, "
    "e.payment_ref, e.tx_hash, e.log_index, e.block_number, e.block_hash FROM trade e", "block_number", True,
    TradeExecuted.from_row)
AUCTIONS = Stream(
    "auctions", frozenset({"auction"}),
    "SELECT e.chain, e.auction_id, e.seller, e.batch_id, e.amount, e.status, e.highest_bidder, "
    "e.highest_price_per_unit, e.bid_count, e.end_time, e.winner, e.valid_from AS block_number, "
    "NULL::text AS block_hash FROM auction e", "valid_from", False, AuctionChanged.from_row, key="e.auction_id")


class Live:
    """What the subscriptions need from the process: the hub, the database pool and the limits."""

    def __init__(self, hub: Any, db: Any, *, max_replay: int = 10_000, trusted_proxies: Any = (),
                 authenticated: bool = False, replica_wait_s: float = 10.0) -> None:
        self.hub, self.db, self.max_replay, self.proxies = hub, db, max_replay, trusted_proxies
        self.replica_wait_s = replica_wait_s
        # Every subscriber presented api.live_token: an intent's transaction may be shown (as the oracle shows it
        # to the intent's owners); without a token, anyone may subscribe, so only its status.
        self.authenticated = authenticated

    async def read(self, *queries: tuple[str, Any], primary: bool = False) -> list[list[dict[str, Any]]]:
        """Run queries in one read-only snapshot (a fresh one per call; on a replica unless `primary`)."""
        s = self.db.session(primary=True) if primary else self.db.session()
        try:
            return [await s.fetch(sql, params) for sql, params in queries]
        finally:
            await s.close()

    async def rows(self, stream: Stream, notice: dict[str, Any]) -> list[dict[str, Any]]:
        params = {"chain": notice["chain"], "lo": notice["from"], "hi": notice["to"], "hash": notice.get("hash")}
        return await self.hub.shared((stream.name, notice["xid"], notice["chain"]),
                                     lambda: self.after(notice["xid"], stream.range_sql(), params))

    async def after(self, xid: int, sql: str, params: Any) -> list[dict[str, Any]]:
        """Rows of `sql` in a snapshot that sees transaction `xid`. On the primary the first try does (a notice is
        delivered after its commit); a read replica may not have replayed it yet, so wait for it, at most
        `replica_wait_s`, then read the primary."""
        delay, waited = 0.005, 0.0
        while True:
            snap, rows = await self.read(("SELECT pg_current_snapshot()::text AS s", None), (sql, params),
                                         primary=waited > self.replica_wait_s)
            if Snapshot(snap[0]["s"]).saw(xid) or waited > self.replica_wait_s + 30:  # (as before replicas: bounded)
                return rows
            await asyncio.sleep(delay)
            waited += delay
            delay = min(delay * 2, 0.5)

    async def history(self, sql: str, params: dict[str, Any],
                      since_hash: str | None = None) -> tuple[Snapshot, list[dict[str, Any]]]:
        """The snapshot and the rows of `sql` in it; with `since_hash`, the block at `params["lo"]` must still be
        that one (checked while it is in the indexer's recent-block window, which holds every unfinalized block)."""
        params = {**params, "limit": self.max_replay + 1}
        check = [("SELECT hash FROM indexed_block WHERE number = %(lo)s AND (%(chain)s::text IS NULL OR "
                  "chain = %(chain)s)", params)] if since_hash is not None else []
        snap, *held, rows = await self.read(("SELECT pg_current_snapshot()::text AS s", None), *check, (sql, params),
                                            primary=True)
        if held and held[0] and since_hash not in {r["hash"] for r in held[0]}:
            raise UserError(f"block {params['lo']} with hash {since_hash[:12]}… is no longer on the indexed chain (a reorg "
                            "replaced it): resume from an earlier block", "SINCE_REORGED")
        if len(rows) > self.max_replay:
            raise UserError(f"more than {self.max_replay} messages since block {params['lo']}: resume from a later "
                            "block, or read the history with a query")
        return Snapshot(snap[0]["s"]), rows

    def open(self, info: strawberry.Info, chain: str | None, types: frozenset[str] = frozenset({"block", "reorg"})) -> Any:
        """A hub subscriber for this operation; its transport is closed with the hub's code if it is dropped."""
        request = info.context.request
        scope = getattr(request, "scope", None) or {}
        client = client_from_scope(scope, self.proxies) if scope else "local"
        ws = request if scope.get("type") == "websocket" else None

        def on_close(why: LiveClosed) -> None:
            info.context.live_closed = why  # the SSE stream names it in its last event
            if ws is not None:
                self.hub.background(_close(ws, why))

        try:
            return self.hub.subscribe(client, frozenset([chain]) if chain else None, on_close, types)
        except LimitReached as exc:
            raise UserError(str(exc), "LIVE_LIMIT") from None


async def _close(ws: Any, why: LiveClosed) -> None:
    # Not cancelled on a timer: the server's WebSocket implementation bounds the closing handshake itself (a client
    # that reads nothing is cut off after its close timeout), and a close cut short midway could leave it half done.
    with contextlib.suppress(Exception):
        await ws.close(code=why.code, reason=why.reason[:120])


def _live(info: strawberry.Info) -> Live:
    live = getattr(info.context, "live", None)
    if live is None:
        raise UserError("live updates are not enabled on this server (api.live)")
    return live


def _filter(**conds: tuple[str, Any]) -> tuple[str, dict[str, Any], Callable[[dict[str, Any]], bool]]:
    """A subscription's filter, once for both paths: (SQL condition on the stream's row, its parameters, the same
    test on a row in Python). `conds`: row column -> (SQL expression, wanted value or None for any); numbers compare
    as ints, addresses as the canonical strings the arguments were turned into."""
    wanted = {col: v for col, (_, v) in conds.items() if v is not None}
    sql = " AND ".join(f"{expr} = %(f_{col})s" for col, (expr, v) in conds.items() if v is not None) or "TRUE"

    def keep(r: dict[str, Any]) -> bool:
        return all((int(r[c]) if isinstance(v, int) else r[c]) == v for c, v in wanted.items())

    return sql, {f"f_{c}": v for c, v in wanted.items()}, keep


async def _stream(info: strawberry.Info, stream: Stream, chain: str | None, since: SinceInput | None,
                  where: tuple[str, dict[str, Any], Callable[[dict[str, Any]], bool]]) -> AsyncGenerator[Any, None]:
    live = _live(info)
    where_sql, where_params, keep = where
    since_hash = _since(since)
    sub = live.open(info, chain)
    try:
        sent: dict[str, int] = {}  # chain -> highest block this subscriber was sent something at
        floor = since.at() if since is not None else -1  # a resuming client holds messages up to `since`
        snap = None
        if since is not None:
            snap, rows = await live.history(stream.history_sql(where_sql),
                                            {"chain": chain, "lo": since.at(), **where_params}, since_hash)
            for r in rows:
                if keep(r):
                    sent[r["chain"]] = max(sent.get(r["chain"], floor), int(r["block_number"]))
                    yield stream.make(r)
        while True:
            n = await sub.get()
            if snap is not None and snap.saw(n["xid"]):
                continue
            if n["t"] == "reorg":
                if sent.get(n["chain"], floor) >= n["from"]:
                    sent[n["chain"]] = n["from"] - 1
                    yield _retracted(n)
            elif n["t"] == "block" and not stream.kinds.isdisjoint(n.get("kinds", ())):
                for r in await live.rows(stream, n):
                    if keep(r):
                        sent[r["chain"]] = max(sent.get(r["chain"], floor), int(r["block_number"]))
                        yield stream.make(r)
    except LiveClosed:
        return  # the transport was told (close code); the operation just ends
    finally:
        sub.detach()


def _since(since: SinceInput | None) -> str | None:
    """Check a `since` argument; its hash, lowercase (or None)."""
    if since is None:
        return None
    since.at()  # one of number or version, ≥ 0
    return hash_arg(since.hash, "since.hash")


def _retracted(n: dict[str, Any]) -> Retracted:
    return Retracted(chain=n["chain"], from_block=n["from"], to_block=n["to"], ancestor_hash=n.get("hash") or "")


# --------------------------------------------------------------------------------------------------- resolvers

async def blocks(info: strawberry.Info, chain: str | None = None,
                 since: SinceInput | None = None) -> AsyncGenerator[BlockMessage, None]:
    """Every indexed block (or backfilled range) with the chain's `_meta`, and `Retracted` on every reorg.
    `since`: first the blocks above it that are still in the indexer's recent-block window."""
    live = _live(info)
    since_hash = _since(since)
    sub = live.open(info, chain)
    try:
        snap = None
        if since is not None:
            snap, rows = await live.history(
                "SELECT chain, number AS block_number, hash AS block_hash FROM indexed_block WHERE "
                "(%(chain)s::text IS NULL OR chain = %(chain)s) AND number > %(lo)s ORDER BY chain, number LIMIT %(limit)s",
                {"chain": chain, "lo": since.at()}, since_hash)
            for r in rows:
                yield BlockIndexed(block=LiveBlock(chain=r["chain"], number=r["block_number"], hash=r["block_hash"]),
                                   from_block=r["block_number"], kinds=[], meta=None)
        while True:
            n = await sub.get()
            if snap is not None and snap.saw(n["xid"]):
                continue
            if n["t"] == "reorg":
                yield _retracted(n)
            elif n["t"] == "block":
                meta = await live.hub.shared(("meta", n["xid"], n["chain"]),
                                             lambda n=n: live.after(n["xid"], _META_SQL, {"chain": n["chain"]}))
                yield BlockIndexed(block=LiveBlock(chain=n["chain"], number=n["to"], hash=n["hash"]), from_block=n["from"],
                                   kinds=list(n.get("kinds", ())), meta=ChainMeta.from_row(meta[0]) if meta else None)
    except LiveClosed:
        return
    finally:
        sub.detach()


async def order_status_changed(info: strawberry.Info, order_id: BigInt | None = None, buyer: str | None = None,
                               seller: str | None = None, chain: str | None = None,
                               since: SinceInput | None = None) -> AsyncGenerator[OrderStatusMessage, None]:
    """Status events of the escrow orders matching orderId, buyer or seller (at least one), each at its block."""
    oid, b, s = uint_arg(order_id, "orderId"), address_arg(buyer, "buyer"), address_arg(seller, "seller")
    if oid is None and b is None and s is None:
        raise UserError("orderStatusChanged needs orderId, buyer or seller")

    where = _filter(order_id=("e.order_id", oid), buyer=("o.buyer", b), seller=("o.seller", s))
    async for m in _stream(info, ORDERS, chain, since, where):
        yield m


async def portfolio_changed(info: strawberry.Info, owner: str, chain: str | None = None,
                            since: SinceInput | None = None) -> AsyncGenerator[PortfolioMessage, None]:
    """Each change of one of `owner`'s holdings: its balances as of the block."""
    o = address_arg(owner, "owner")
    async for m in _stream(info, HOLDINGS, chain, since, _filter(owner=("e.owner", o))):
        yield m


async def certificate_issued(info: strawberry.Info, holder: str | None = None, chain: str | None = None,
                             since: SinceInput | None = None) -> AsyncGenerator[CertificateMessage, None]:
    """Retirement certificates as they are issued (of `holder`, or all)."""
    h = address_arg(holder, "holder")
    async for m in _stream(info, CERTIFICATES, chain, since, _filter(holder=("e.holder", h))):
        yield m


async def trade_executed(info: strawberry.Info, batch_id: BigInt | None = None, chain: str | None = None,
                         since: SinceInput | None = None) -> AsyncGenerator[TradeMessage, None]:
    """Sales as they happen (of credit batch `batchId`, or all)."""
    bid = uint_arg(batch_id, "batchId")
    async for m in _stream(info, TRADES, chain, since, _filter(batch_id=("e.batch_id", bid))):
        yield m


async def auction_changed(info: strawberry.Info, auction_id: BigInt | None = None, batch_id: BigInt | None = None,
                         seller: str | None = None, chain: str | None = None,
                         since: SinceInput | None = None) -> AsyncGenerator[AuctionMessage, None]:
    """Auctions as they change: created, each bid (highest bid, end after it), settled or unsold (of one auction,
    batch or seller, or all)."""
    aid, bid, who = uint_arg(auction_id, "auctionId"), uint_arg(batch_id, "batchId"), address_arg(seller, "seller")
    where = _filter(auction_id=("e.auction_id", aid), batch_id=("e.batch_id", bid), seller=("e.seller", who))
    async for m in _stream(info, AUCTIONS, chain, since, where):
        yield m


async def intent_status_changed(info: strawberry.Info, key: str) -> AsyncGenerator[IntentStatusChanged, None]:
    """An oracle write intent's status: first its current status (if it exists), then each transition."""
    live = _live(info)
    if not key or len(key) > 200:
        raise UserError("key: 1 to 200 characters")
    sub = live.open(info, None, frozenset({"intent"}))
    try:
        snap, rows = await live.history(
            "SELECT idempotency_key AS key, chain, status, tx_hash AS tx, block_number AS block FROM oracle_intent "
            "WHERE idempotency_key = %(lo)s AND %(chain)s::text IS NULL LIMIT %(limit)s", {"chain": None, "lo": key})
        for r in rows:
            yield IntentStatusChanged.from_row(r, live.authenticated)
        while True:
            n = await sub.get()
            if n["t"] == "intent" and n.get("key") == key and not snap.saw(n["xid"]):
                yield IntentStatusChanged.from_row(n, live.authenticated)
    except LiveClosed:
        return
    finally:
        sub.detach()


@strawberry.type(description="Live updates (graphql-transport-ws at /graphql, or Server-Sent Events at /graphql/stream). "
                 "Every message names the block it is true at; `since: {number}` first replays what was missed.")
class Subscription:
    blocks: BlockMessage = strawberry.subscription(resolver=blocks)
    order_status_changed: OrderStatusMessage = strawberry.subscription(resolver=order_status_changed)
    portfolio_changed: PortfolioMessage = strawberry.subscription(resolver=portfolio_changed)
    certificate_issued: CertificateMessage = strawberry.subscription(resolver=certificate_issued)
    trade_executed: TradeMessage = strawberry.subscription(resolver=trade_executed)
    auction_changed: AuctionMessage = strawberry.subscription(resolver=auction_changed)
    intent_status_changed: IntentStatusChanged = strawberry.subscription(resolver=intent_status_changed)
