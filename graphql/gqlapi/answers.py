"""The answer cache of POST /graphql: a repeated question about data that has not changed is answered from memory.

An answer is a pure function of the document, its variables, the database's indexed state, and (for a few fields)
the database's clock. The indexed state is named exactly and cheaply:
- every indexed table changes only in the transaction that writes its chain's cursor (indexer.writer: rows and
  cursor commit together, `updated_at = now()`; a reorg undo moves the cursor back), so the cursors (chain, block,
  hash, updated_at) name it;
- any other writer of a table the cached answers read bumps that table's counter in `data_version` in its own
  transaction (statement triggers, store migration 0008): the oracle's oracle_verification (a verifier's approval,
  read by provenance), and an indexed table written by anyone but the indexer (an operator's repair in psql; the
  indexer's sessions say who they are, indexer.writer.connect).

So each request of a cacheable document first reads that state (`PROBE`, one small statement outside a transaction)
and looks the answer up under (document, variables, state). Concurrent requests share a read (`Probe`): a request
waits for the next read that *starts* after it arrived, never one already under way, so what it is answered from is as
new as what a read of its own would have seen (every commit that ended before it arrived; on a read replica,
everything the replica had replayed by then), and under load one statement serves every request that arrived while the
previous read ran (a psycopg round trip cost ~40% of a cached answer's CPU). On a hit, that is all it runs; on a miss
the document is executed in a snapshot whose first statement reads the state again, and the answer is kept under that
state: exactly the answer at that state. On a read replica the probe reads the replica's replayed state, so a replica
behind another one never serves, nor is served, a newer answer. An answer that moves with time (marketStats' window
ends "now") says until which second of the database's clock it holds (`Context.keep_until`: marketStats until a trade
leaves or enters its window, or the next second when its bounds are asked for; candles with a default range: not
kept); the probe reads that clock too, as the resolvers' SQL does
(`extract(epoch FROM statement_timestamp())::bigint`).

Which documents: those whose every field that runs a resolver is listed in `PURE` (reads only indexed data,
oracle_verification, its arguments and the static config) — walked once per prepared document, fragments and
abstract types included. Anything else (`_meta` reads indexing errors and lag, escrow orders and settlements carry
oracle state, subscriptions) runs as before. Answers with errors are never stored. Graph-node keeps a query
cache keyed by the block a query resolved to, the same idea; here the key is the database's own state, so no
notice delivery lag can serve an answer older than what the same snapshot would read.

Bounded by bytes (`api.answer_cache_mb`, LRU); an entry whose state is no longer current is replaced by the next
answer to its question.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from graphql import (FieldNode, FragmentDefinitionNode, FragmentSpreadNode, GraphQLObjectType, GraphQLSchema, InlineFragmentNode,
                     OperationDefinitionNode, get_named_type, is_abstract_type)

# Resolver fields whose answer is a pure function of the indexed tables (and oracle_verification), their arguments
# and the process's static config. A resolver field not listed makes its document uncacheable.
PURE = frozenset({
    "Query.portfolio", "Portfolio.certificates",
    "Query.certificates", "CertificateConnection.nodes", "Query.certificate",
    "Certificate.batch", "Certificate.provenance", "Certificate.verification",
    "Query.provenance", "Provenance.batch",
    "Query.marketStats", "Query.candles",
    "Query.listings", "ListingConnection.nodes", "Listing.batch",
    "Query.trades", "TradeConnection.nodes", "Trade.batch",
    "Query.auctions", "Query.auction", "AuctionConnection.nodes", "Auction.highestBid", "Auction.bids", "Auction.batch",
})
PROBE = ("SELECT extract(epoch FROM statement_timestamp())::bigint AS s, "
         "(SELECT string_agg(chain || ':' || block_number || ':' || block_hash || ':' || updated_at, ',' ORDER BY chain) "
         "FROM indexer_cursor) AS c, "
         "(SELECT string_agg(source || ':' || version, ',' ORDER BY source) FROM data_version) AS v")


def classify(schema: GraphQLSchema, document: Any, operation: OperationDefinitionNode) -> bool:
    """Whether the operation's answers may be kept: every resolver field it selects is PURE."""
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    seen: set[tuple[str, str]] = set()
    todo: list[tuple[Any, Any]] = [(schema.query_type, operation.selection_set)]
    while todo:
        parent, selection_set = todo.pop()
        for sel in selection_set.selections:
            if isinstance(sel, FieldNode):
                name = sel.name.value
                if name == "__typename":
                    continue
                if name.startswith("__"):  # introspection: answered by graphql-core, rare; not worth a slot
                    return False
                for t in (schema.get_possible_types(parent) if is_abstract_type(parent) else [parent]):
                    field = t.fields.get(name) if isinstance(t, GraphQLObjectType) else None
                    if field is None:
                        continue
                    if field.resolve is not None and not getattr(field.resolve, "_is_default", False):
                        coordinate = f"{t.name}.{name}"
                        if coordinate not in PURE:
                            return False
                    if sel.selection_set is not None:
                        todo.append((get_named_type(field.type), sel.selection_set))
            elif isinstance(sel, InlineFragmentNode):
                cond = schema.get_type(sel.type_condition.name.value) if sel.type_condition is not None else parent
                todo.append((cond, sel.selection_set))
            elif isinstance(sel, FragmentSpreadNode):
                frag = fragments.get(sel.name.value)
                if frag is None:
                    return False
                key = (frag.name.value, parent.name)
                if key not in seen:
                    seen.add(key)
                    todo.append((schema.get_type(frag.type_condition.name.value), frag.selection_set))
    return True


class Probe:
    """Reads of the state shared by the requests that wait for them. `read_state()` runs one read; `read()` returns the
    result of the first read that starts after the call (the one running, if any, started earlier: the caller waits
    for the next, which starts when the running one ends and serves everyone who came meanwhile). A failed read raises
    its error in each of its waiters; a waiter cancelled (its client left) cancels only itself; the read itself
    cancelled (shutdown) fails its waiters and those of the next with RuntimeError, and starts no other. Bounding a
    read's time is `read_state`'s part: one read at a time, so a stuck one would hold every lookup."""

    def __init__(self, read_state: Callable[[], Awaitable[Any]]) -> None:
        self.read_state = read_state
        self._next: asyncio.Future | None = None  # the read the callers so far wait for; not started yet
        self._task: asyncio.Task | None = None  # the read running (kept: the loop holds tasks weakly)
        self.reads = 0  # reads started (tests and metrics: how many requests shared each)

    async def read(self) -> Any:
        fut = self._next
        if fut is None:
            fut = self._next = asyncio.get_running_loop().create_future()
            if self._task is None:
                self._start()
        return await asyncio.shield(fut)

    def _start(self) -> None:
        fut, self._next = self._next, None
        self.reads += 1
        self._task = asyncio.get_running_loop().create_task(self._run(fut))

    async def _run(self, fut: asyncio.Future) -> None:
        try:
            got = await self.read_state()
        except Exception as exc:  # noqa: BLE001 - handed to every waiter, which reports it as its own
            _fail(fut, exc)
        except BaseException:  # cancelled (shutdown): no read follows; nobody is left waiting
            self._task = None
            _fail(fut, RuntimeError("the state read was interrupted"))
            if self._next is not None:
                nxt, self._next = self._next, None
                _fail(nxt, RuntimeError("the state read was interrupted"))
            raise
        else:
            fut.set_result(got)
        self._task = None
        if self._next is not None:
            self._start()


def _fail(fut: asyncio.Future, exc: BaseException) -> None:
    fut.set_exception(exc)
    fut.exception()  # retrieved here: no "never retrieved" warning when every waiter has left


class Answers:
    """The LRU of answers: (document key, variables) -> (state, valid until, body), at most `max_bytes` of bodies."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.entries: OrderedDict[tuple, tuple[tuple, int | None, bytes]] = OrderedDict()
        self.hits = self.misses = 0

    @staticmethod
    def key(document_key: Any, variables: dict[str, Any] | None) -> tuple | None:
        """The entry key, or None for variables that cannot be a key (then the request runs uncached)."""
        try:
            return document_key, orjson.dumps(variables or {}, option=orjson.OPT_SORT_KEYS)
        except TypeError:
            return None

    @staticmethod
    async def state(session: Any) -> tuple[tuple, int]:
        """(the database's state, its clock's second) as `session` sees them (in a snapshot session: run it as the
        first statement, which takes the snapshot)."""
        row = (await session.fetch(PROBE, count=False))[0]
        return (row["c"], row["v"]), row["s"]

    def get(self, key: tuple, state: tuple, second: int) -> bytes | None:
        hit = self.entries.get(key)
        if hit is not None and hit[0] == state and (hit[1] is None or second < hit[1]):
            self.entries.move_to_end(key)
            self.hits += 1
            return hit[2]
        self.misses += 1
        return None

    def put(self, key: tuple, state: tuple, valid_until: int | None, body: bytes) -> None:
        size = _size(key, body)
        if size > self.max_bytes // 8:  # one huge answer does not empty the cache
            return
        old = self.entries.pop(key, None)
        if old is not None:
            self.bytes -= _size(key, old[2])
        self.entries[key] = (state, valid_until, body)
        self.bytes += size
        while self.bytes > self.max_bytes and self.entries:
            k, (_, _, b) = self.entries.popitem(last=False)
            self.bytes -= _size(k, b)


def _size(key: tuple, body: bytes) -> int:
    """What an entry is charged: its body, its variables and ~200 bytes for the entry itself."""
    return len(body) + len(key[1]) + 200
