"""The sync loop of one chain: backfill finalized ranges in bulk, then follow the head block by block.

Invariants kept here (DESIGN.md 1-3):
- The cursor moves only inside `writer.commit`, together with the rows of the blocks it covers.
- Continuity: every advance of the cursor - a backfill range, a head block, the first step after a start, a
  takeover or a pause - first proves that the first new block's parent is the block under the cursor. If it is
  not, the loop walks back over `indexed_block` to the newest block the node still has with the same hash (the
  common ancestor) and `writer.undo`es everything above it; `writer.commit` checks the same parent hash again
  against the cursor row it locks. A reorg that would change a block at or below our finalized number raises
  ReorgTooDeep before anything is written.
- A node whose head is below the cursor is either lagging (a load-balanced or syncing node) or serving a chain that
  really got shorter (proof-of-stake chains can reorg to a shorter branch). The rule: a different hash at a height
  we hold is a reorg at once; a node that still has the block under our cursor is lagging; a node that answers
  "no block" at the cursor height while its head stays the same block for `shrink_grace_s` (or while its head is
  already final) has a shortened chain: unwind to the newest block it still has. A node whose head is below our
  finalized block is never followed down: it is lagging or the wrong node, and we wait (logging why).
- Pipelined backfill: the next `prefetch` ranges are fetched and decoded on their own threads (continuity is
  checked as each is applied, so a prefetched range is never trusted, only saved time); a range's write (COPY,
  version closes, cursor; `writer.commit`, one transaction as always) runs on a second connection in a write thread
  while the main thread applies the next range, so Postgres and the handlers work at the same time. The next range
  is applied against the cache with the previous one merged in, and handed over only after the previous write
  committed; a read of committed state during a handler (a lazily cached entity) first waits for the write in
  flight. If a write fails (fenced, database down), the cache and the cursor
  that ran ahead are dropped and reloaded from the database, whose cursor never left its rows. Backfill writes use
  `synchronous_commit = off` (writer.commit, durable=False): they cover finalized blocks, so a commit lost to a
  server crash is fetched and written again, identically, from the older cursor.
- Cold backfill (indexer.indexes): on a database without event or entity rows those tables' secondary indexes are
  dropped at load and built when the loop first reaches the head; `caught_up()` is false until they exist.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import psycopg

from core.preflight import OperatorError
from chains.base import Block, ChainEvent, ChainReader, ReorgTooDeep, UndecodableLog
from chains.rpc import RpcError
from indexer import indexes, writer
from indexer.context import Context, StateCache
from indexer.registry import load_handlers
from store.engine import libpq_url

log = logging.getLogger("carbonledger.indexer")

PREFETCH = 2  # backfill ranges fetched ahead of the one being applied (ChainSync's `prefetch`)


class GenesisMismatch(OperatorError):
    """The node serves a different chain than the one this database indexed under the same name."""


@dataclass
class Stats:
    """Live figures of one chain, read by the progress display, /ready and /metrics."""

    chain: str
    block: int = -1
    head: int = -1
    finalized: int = -1
    events: int = 0
    blocks: int = 0
    reorgs: int = 0
    mode: str = "starting"  # starting | backfill | follow | standby
    problem: str | None = None  # why the last step failed ("rpc: ...", "database: ..."), None when healthy
    waiting: str | None = None  # why the loop is not advancing though nothing failed (a node behind us), else None
    leader: bool = False
    started: float = field(default_factory=time.monotonic)
    last_step: float = field(default_factory=time.monotonic)

    @property
    def lag(self) -> int:
        return max(0, self.head - self.block) if self.head >= 0 else -1


class ChainSync:
    """Indexes one chain into Postgres. `step()` does one unit of work: one range, one block or one head poll."""

    def __init__(self, chain: str, reader: ChainReader, db_url: str, *, addresses: Mapping[str, str],
                 start_block: int, finality_depth: int, target_events: int = 10_000, max_span: int = 2000,
                 prefetch: bool | int = True, cache_limit: int = 1_000_000, shrink_grace_s: float = 10.0,
                 follow_finalized: bool = False, labels: Mapping[int, Mapping[str, Any]] | None = None,
                 pipeline: bool = True, defer_indexes: bool = True) -> None:
        self.chain = chain
        self.labels = dict(labels or {})  # external batch id -> configured registry details (chains.evm.markets)
        self.reader = reader
        self.db_url = libpq_url(db_url)
        self.addresses = dict(addresses)
        self.start_block = start_block
        self.depth = finality_depth
        self.target_events = target_events
        self.max_span = max_span
        self.shrink_grace_s = shrink_grace_s
        self.follow_finalized = follow_finalized  # treat the newest final block as the head: never a reorg
        self.span = min(10, max_span)  # grows while ranges stay under target_events
        self.handlers = load_handlers()
        self.cache = StateCache(cache_limit)
        self.stats = Stats(chain)
        self.conn: psycopg.Connection | None = None
        self.cursor: tuple[int, str | None] = (start_block - 1, None)
        self.genesis: str | None = None
        self.finalized_number = -1
        self._head: Block | None = None
        self._fin = -1
        self._head_at = 0.0
        # Ranges fetched ahead while one is applied: `prefetch` of them (True: PREFETCH), each on its own thread, so
        # one waits on the node while another decodes (with a single one the node's answer time sat on the critical
        # path: the loop waited on the fetch ~30% of a backfill).
        self.prefetch = (PREFETCH if prefetch is True else int(prefetch)) if prefetch else 0
        self._pool = ThreadPoolExecutor(self.prefetch, thread_name_prefix=f"fetch-{chain}") if self.prefetch else None
        self._ahead: deque[tuple[int, int, Future]] = deque()  # (from, to, fetch) of consecutive ranges, in order
        # Pipelined backfill (module docstring): a range's write runs on its own connection and thread while the next
        # range is applied. At most one write is in flight; `cursor` is where that write leaves the cursor, `stats`
        # follow what has committed.
        self._wpool = ThreadPoolExecutor(1, thread_name_prefix=f"write-{chain}") if pipeline else None
        self.wconn: psycopg.Connection | None = None
        self._inflight: tuple[Future, Context, Block] | None = None
        self._stale = False  # a pipelined write failed: cache and cursor ran ahead; reload before the next step
        self.defer_indexes = defer_indexes
        self._deferred = False  # event or entity table indexes are missing (indexer.indexes): build them once caught up
        self._building: list[str] = []  # of those, the ones another session is building CONCURRENTLY (step)
        self._building_seen = 0.0
        self.cache.quiesce = self._quiesce
        self._short: tuple[str, float] | None = None  # (node head hash, since) while the node lacks our cursor block
        self._lag_logged = 0.0

    # ------------------------------------------------------------------ lifecycle

    def load(self) -> None:
        """(Re)read the cursor and the state cache; call on start, after a lost race and after a reorg."""
        self._settle()
        if self.conn is None or self.conn.closed or self.conn.broken:
            self.conn = writer.connect(self.db_url)
        if self._wpool is not None and (self.wconn is None or self.wconn.closed or self.wconn.broken):
            self.wconn = writer.connect(self.db_url)
        genesis = self.reader.block(0)
        self.genesis = genesis.hash if genesis is not None else None
        with self.conn.transaction():
            cur = writer.read_cursor(self.conn, self.chain)
            held = writer.stored_genesis(self.conn, self.chain)
            if held is not None and self.genesis is not None and held != self.genesis:
                raise GenesisMismatch(
                    f"this database holds chain {self.chain} with genesis {held[:18]}…; the node has genesis "
                    f"{self.genesis[:18]}…", f"`carbonledger reset --chain {self.chain}`, or use another database")
            self.cache.load(self.conn, self.chain)
        indexes.drop_obsolete(self.conn)
        if self.defer_indexes and indexes.cold(self.conn):
            indexes.drop(self.conn)
        self._deferred, self._building = bool(indexes.missing(self.conn)), []
        self.cursor = (cur[0], cur[1]) if cur else (self.start_block - 1, None)
        self.finalized_number = cur[2] if cur else -1
        self.stats.block = self.cursor[0]
        self._drop_prefetch()

    def disconnect(self) -> None:
        """After database trouble: end the write in flight, then close both connections, so the next `load` opens
        fresh ones. (A connection the server terminated in the middle of a pipeline can stay neither
        closed nor broken, stuck in pipeline mode; reusing it failed every write after.)"""
        self._settle()
        for conn in (self.conn, self.wconn):
            if conn is not None:
                conn.close()

    def close(self) -> None:
        """Stop: the write in flight (if any) ends first, committed or not; then the connections close."""
        self._drop_prefetch()
        self.disconnect()
        if self._pool:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if self._wpool:
            self._wpool.shutdown(wait=True)

    # ------------------------------------------------------------------ the write in flight

    def _quiesce(self) -> None:
        """Wait until no write is in flight, without raising (its failure is raised by the next _drain): for reads of
        committed state during a handler (a lazily cached entity), which must see the previous range."""
        if self._inflight is not None:
            wait([self._inflight[0]])

    def _settle(self) -> None:
        """Drain, logging instead of raising (closing, reloading: the database's cursor is the truth then)."""
        try:
            self._drain()
        except Exception as exc:  # noqa: BLE001 - reported; whatever did not commit is fetched again
            log.warning("a pipelined write did not commit; continuing from the database's cursor",
                        extra={"chain": self.chain, "error": f"{type(exc).__name__}: {str(exc)[:200]}"})

    def _drain(self) -> None:
        """Wait for the write in flight; account it when it committed. When it failed, the cache and the cursor ran
        ahead of the database: forget them (reloaded before the next step) and raise its error."""
        if self._inflight is None:
            return
        fut, ctx, end = self._inflight
        try:
            fut.result()
        except writer.Fenced:
            self._inflight = None
            self._fenced()
        except BaseException:
            self._inflight = None
            self._stale = True
            raise
        self._inflight = None
        self._account(ctx, end)

    def flush(self) -> None:
        """Wait until what this loop handed over has committed (raises what a failed write raised)."""
        self._drain()

    def _account(self, ctx: Context, end: Block) -> None:
        s = self.stats
        s.blocks += end.number - s.block
        s.block, s.events = end.number, s.events + ctx.events

    def _drop_prefetch(self) -> None:
        while self._ahead:
            self._ahead.pop()[2].cancel()

    # ------------------------------------------------------------------ the loop body

    def _refresh_head(self) -> None:
        head = self.reader.head()
        fin = self.reader.finalized(head, self.depth)
        if self.follow_finalized and fin < head.number:
            final = self.reader.block(max(fin, 0))  # genesis is final by definition
            if final is None:
                raise RpcError(-1, f"finalized block {fin} not available", method="block")
            head = final
        self._head, self._head_at = head, time.monotonic()
        self._fin = fin
        self.stats.head, self.stats.finalized = head.number, self._fin

    def caught_up(self) -> bool:
        return (self._inflight is None and not self._deferred and self._head is not None
                and self.cursor[0] >= self._head.number)

    def step(self) -> bool:
        """Do one unit of work; False when there was nothing to do (caught up, or the node lags)."""
        self.stats.last_step = time.monotonic()
        if self._stale:
            self._stale = False
            self.load()
        if self._inflight is not None and self._inflight[0].done():
            self._drain()  # surfaces a failed write at once
        if self._head is None or self.cursor[0] >= self._head.number or time.monotonic() - self._head_at > 2.0:
            self._refresh_head()
        n = self.cursor[0]
        self.stats.waiting = None
        if n < self._fin:
            self.stats.mode = "backfill"
            nxt = self._ahead[0] if self._ahead else None
            b = nxt[1] if nxt is not None and nxt[0] == n + 1 else min(self._fin, n + self.span)
            self._backfill(n + 1, b)
            return True
        self.stats.mode = "follow"
        self._drop_prefetch()
        self._drain()
        if self._deferred and (not self._building or time.monotonic() - self._building_seen > 1.0):
            assert self.conn is not None
            self.stats.waiting = "building the event and entity tables' secondary indexes after a cold backfill"
            w = self.wconn  # idle (drained); a broken one is left out, so a retry builds on self.conn alone
            more = [w] if w is not None and not w.closed and not w.broken else []
            left = indexes.build(self.conn, self.chain, *more)
            self.stats.waiting = None
            if left and left != self._building:
                log.info("another session is building indexes CONCURRENTLY; ready once it has finished",
                         extra={"chain": self.chain, "indexes": left})
            # Another session's CREATE INDEX CONCURRENTLY (a migration): blocks are still followed, caught_up()
            # (readiness) waits for it; looked at again each second.
            self._deferred, self._building, self._building_seen = bool(left), left, time.monotonic()
        if self._head.number > n:
            return self._follow(n + 1)
        busy = self._check_stale()
        if self._building and self.stats.waiting is None:
            self.stats.waiting = f"another session is building {', '.join(self._building)} CONCURRENTLY (a migration?)"
        return busy

    def _fetch(self, a: int, b: int) -> tuple[Block, list[ChainEvent | UndecodableLog], Block]:
        """The first block of [a, b] (whose parent proves continuity), the range's events and its last block."""
        first = self.reader.block(a)
        events = self.reader.events(a, b)
        if type(events) is not list:
            events = list(events)
        end = first if a == b else self.reader.block(b)
        if first is None or end is None:
            raise RpcError(-1, f"block {a if first is None else b} not available", method="eth_getBlockByNumber")
        _check_events(events, a, b, {a: first.hash, b: end.hash}, f"range {a}-{b}")
        return first, events, end

    def _backfill(self, a: int, b: int) -> None:
        nxt = self._ahead.popleft() if self._ahead else None  # taken before .result(): a failed one is not retried
        if nxt is not None and nxt[:2] == (a, b):
            first, events, end = nxt[2].result()
        else:
            if nxt is not None:
                nxt[2].cancel()
            self._drop_prefetch()  # ranges after a range we did not expect are not ours either
            first, events, end = self._fetch(a, b)
        if not self._continues(first):
            return
        n_events = len(events)
        # Keep ranges near the target event count: memory stays flat however dense the chain is.
        if n_events > self.target_events:
            self.span = max(1, self.span // 2)
        elif n_events < self.target_events // 2:
            self.span = min(self.max_span, self.span * 2)
        if self._pool is not None:
            # Fetch the next ranges while this one is applied and written (continuity is checked as each is applied).
            last = self._ahead[-1][1] if self._ahead else b
            while len(self._ahead) < self.prefetch and last < self._fin:
                nb = min(self._fin, last + self.span)
                self._ahead.append((last + 1, nb, self._pool.submit(self._fetch, last + 1, nb)))
                last = nb
        ctx = self._context()
        self._apply(ctx, events)
        del events  # the rows are in ctx now; do not hold both through the COPY
        self._commit(ctx, first, end, pipelined=True)

    def _continues(self, first: Block) -> bool:
        """Continuity (module docstring): does `first` grow out of the block under the cursor? If not, undo the
        reorg that shows (or stop, when it reaches below finality) and say no."""
        if self.cursor[1] is None or first.parent_hash == self.cursor[1]:
            return True
        self._reorg(f"block {first.number} has parent {first.parent_hash[:10]}, we hold {self.cursor[1][:10]} at "
                    f"{first.number - 1}")
        return False

    def _follow(self, n: int) -> bool:
        blk = self.reader.block(n)
        if blk is None:
            return False  # the node has not got it yet: a lagging node, not a reorg
        if not self._continues(blk):
            return True
        try:
            events = self.reader.events_at(blk)
        except RpcError as exc:  # the block vanished between the two calls: look again next step
            log.info("logs of block unavailable", extra={"chain": self.chain, "block": n, "error": str(exc)[:200]})
            return False
        _check_events(events, n, n, {n: blk.hash}, f"block {n}")
        ctx = self._context()
        ctx.blocks.append(blk)
        self._apply(ctx, events)
        self._commit(ctx, blk, blk)
        return True

    def _check_stale(self) -> bool:
        """Head at or below the cursor: caught up, a lagging node, a reorg or a shortened chain (module docstring)."""
        head = self._head
        assert head is not None and self.conn is not None
        row = self.conn.execute("SELECT hash FROM indexed_block WHERE chain = %s AND number = %s",
                                (self.chain, head.number)).fetchone()
        if row is not None and row[0] != head.hash:
            self._reorg(f"head {head.number} is {head.hash[:10]}, we hold {row[0][:10]}")
            return True
        if head.number >= self.cursor[0]:
            self._short = None
            return False
        if head.number < self.finalized_number:
            self._short = None
            self.stats.waiting = (f"the node's head {head.number} is below our finalized block {self.finalized_number}: "
                                  "a lagging or wrong node")
            if time.monotonic() - self._lag_logged > 60:
                self._lag_logged = time.monotonic()
                log.warning("node head is below our finalized block: a lagging or wrong node; waiting for it",
                            extra={"chain": self.chain, "node_head": head.number, "finalized": self.finalized_number,
                                   "block": self.cursor[0]})
            return False
        mine = self.reader.block(self.cursor[0])
        if mine is not None:
            self._short = None
            if mine.hash != self.cursor[1]:
                self._reorg(f"block {mine.number} is {mine.hash[:10]}, we hold {str(self.cursor[1])[:10]}")
                return True
            return False  # the node has our block: only its head answer lags
        now = time.monotonic()
        if self._short is None or self._short[0] != head.hash:
            self._short = (head.hash, now)
            log.info("node has no block at our cursor and its head is below it: lagging or a shortened chain",
                     extra={"chain": self.chain, "node_head": head.number, "block": self.cursor[0],
                            "grace_s": self.shrink_grace_s})
        waited = now - self._short[1]
        self.stats.waiting = (f"the node's head {head.number} is below our cursor {self.cursor[0]} and it has no block "
                              f"there: lagging, or a shortened chain unwound after {self.shrink_grace_s:g}s")
        if self._fin >= head.number or waited >= self.shrink_grace_s:
            self._short = None
            self._reorg(f"chain shortened: the node's head {head.number} ({head.hash[:10]}) stayed below our cursor "
                        f"{self.cursor[0]} for {waited:.1f}s" + (" and is final" if self._fin >= head.number else ""))
            return True
        return False

    # ------------------------------------------------------------------ apply and commit

    def _context(self) -> Context:
        return Context(self.chain, self.cache, self.addresses, self.labels)

    def _apply(self, ctx: Context, events: Sequence[ChainEvent | UndecodableLog]) -> None:
        # The handlers by contract, then event name (built per call, a few us: tests swap handlers in): two lookups
        # cost less per event than building ev.key.
        route: dict[str, dict[str, Any]] = {}
        for key, fn in self.handlers.items():
            contract, _, name = key.partition(":")
            route.setdefault(contract, {})[name] = fn
        none: dict[str, Any] = {}
        for ev in events:
            if isinstance(ev, UndecodableLog):
                log.warning("undecodable log", extra={"chain": self.chain, "block": ev.block_number, "tx": ev.tx_hash,
                                                       "log_index": ev.log_index, "error": ev.error})
                ctx.error(ev, ev.error)
                continue
            fn = route.get(ev.contract, none).get(ev.name)
            if fn is None:
                continue  # an event we do not index
            try:
                ctx.apply_event(fn, ev)  # all of the event's effects, or (if it raises) none of them
            except Exception as exc:  # noqa: BLE001 - a bad event must not stop the chain; it is recorded
                log.exception("handler failed", extra={"chain": self.chain, "event": ev.key, "tx": ev.tx_hash})
                ctx.error(ev, f"handler {ev.key}: {type(exc).__name__}: {exc}")
            ctx.events += 1

    def _commit(self, ctx: Context, first: Block, end: Block, *, pipelined: bool = False) -> None:
        """Write ctx and move the cursor to `end`; `first` is the first new block (the writer checks continuity).
        A pipelined commit (backfill) is handed to the write thread once the previous one has committed."""
        assert self.conn is not None
        fin = max(self._fin, self.finalized_number)
        self._drain()
        kw = dict(keep_from=fin - self.depth, first=first, genesis=self.genesis)
        if pipelined and self._wpool is not None and self.wconn is not None:
            closes = writer.plan_closes(ctx)  # from the cache before ctx: the write closes what ctx supersedes
            fut = self._wpool.submit(writer.commit, self.wconn, ctx, self.cursor, end, fin, closes=closes,
                                     durable=False, **kw)
            self._inflight = (fut, ctx, end)
        else:
            try:
                writer.commit(self.conn, ctx, self.cursor, end, fin, **kw)
            except writer.Fenced:
                self._fenced()
            self._account(ctx, end)
        ctx.commit_to_cache()
        self.cursor = (end.number, end.hash)
        self.finalized_number = fin

    def _fenced(self) -> None:
        """In an `except writer.Fenced`: reload cursor and cache from the database, then re-raise."""
        exc = sys.exc_info()[1]
        log.warning("cursor moved under us; reloading" if type(exc) is writer.Fenced else
                    "blocks do not continue the cursor; reloading", extra={"chain": self.chain, "error": str(exc)})
        self._stale = True  # until the reload below succeeds
        self.load()
        self._stale = False
        raise exc

    # ------------------------------------------------------------------ reorgs

    def _reorg(self, why: str) -> None:
        assert self.conn is not None
        self._drop_prefetch()
        self._drain()  # the database's cursor must be ours before looking for the ancestor
        rows = self.conn.execute("SELECT number, hash FROM indexed_block WHERE chain = %s AND number <= %s "
                                 "ORDER BY number DESC", (self.chain, self.cursor[0])).fetchall()
        ancestor = None
        for num, h in rows:
            cb = self.reader.block(num)
            if cb is not None and cb.hash == h:
                ancestor = (num, h)
                break
            if num <= self.finalized_number:
                break
        if ancestor is None:
            msg = (f"reorg deeper than finality on {self.chain}: {why}; no common ancestor above finalized block "
                   f"{self.finalized_number}; nothing was rewritten")
            log.critical(msg, extra={"chain": self.chain, "alert": "reorg_too_deep"})
            raise ReorgTooDeep(msg)
        depth = self.cursor[0] - ancestor[0]
        if depth == 0:
            # The node still has our cursor block yet showed a child of another parent: two backends of one
            # endpoint on different branches. Nothing to undo; a node fault, backed off by the runner.
            raise RpcError(-1, f"node is inconsistent ({why}) while block {ancestor[0]} still has our hash",
                           method="eth_getBlockByNumber")
        writer.undo(self.conn, self.chain, self.cursor, ancestor[0], ancestor[1])
        log.warning("reorg undone", extra={"chain": self.chain, "ancestor": ancestor[0], "depth": depth, "why": why})
        self.stats.reorgs += 1
        self.load()
        self._head = None


def _check_events(events: Sequence[ChainEvent | UndecodableLog], a: int, b: int, hashes: Mapping[int, str],
                  what: str) -> None:
    """The node's events must lie in [a, b], carry the hash of each block we fetched there, and be distinct: anything
    else means the node changed branch between our calls or answered wrongly. RpcError (retried with backoff), never
    rows written under the wrong block or a duplicate key that would stop the sync."""
    # Distinct, by transaction and by position: the readers hand events over in chain order, and a transaction lies
    # within one block, so while each position (block, log index) is above the one before and no transaction shows
    # up in a second block, no two events can share either key. The key sets (tuples per event: ~0.3 us per event of
    # a backfill) are built only from the first event for which that does not hold (one Substrate event mapped onto
    # two protocol events; a node that answers a log twice, numbers logs per transaction, or moves a transaction to
    # another block as it changes branch between our calls).
    seen: set[tuple[Any, int, str]] | None = None
    last, last_tx = (-1, -1), None
    blocks: dict[str, int] = {}  # tx hash -> its block, while the answer is in order
    for i, ev in enumerate(events):
        if not isinstance(ev, ChainEvent):
            continue  # a malformed log is recorded as an indexing error; its envelope proves nothing
        n = ev.block_number
        if not a <= n <= b:
            raise RpcError(-1, f"node answered a log of block {n} for {what}", method="eth_getLogs")
        want = hashes.get(n)
        if want is not None and ev.block_hash != want:
            raise RpcError(-1, f"node changed branch while {what} was fetched (log of block {n} has "
                               f"hash {ev.block_hash[:10]})", method="eth_getLogs")
        if seen is None:
            pos, tx = (n, ev.log_index), ev.tx_hash
            if pos > last and ((tx == last_tx and n == last[0]) or blocks.setdefault(tx, n) == n):
                last, last_tx = pos, tx
                continue
            seen = set()
            for e in events[:i]:  # distinct so far: this only fills the set
                if isinstance(e, ChainEvent):
                    _distinct(e, seen, what)
        _distinct(ev, seen, what)


def _distinct(ev: ChainEvent, seen: set[tuple[Any, int, str]], what: str) -> None:
    """Refuse `ev` if an event in `seen` shares its row key, by transaction (event rows) or by position (the ledger);
    then add both. One Substrate event may map to two protocol events at a position, hence the event's key in both."""
    key, at = (ev.tx_hash, ev.log_index, ev.key), (ev.block_number, ev.log_index, ev.key)
    if key in seen:
        raise RpcError(-1, f"node answered log {ev.tx_hash[:10]}:{ev.log_index} twice for {what}", method="eth_getLogs")
    if at in seen:
        raise RpcError(-1, f"node answered two logs at log index {ev.log_index} of block {ev.block_number} for {what} "
                           "(a log index counts through its block)", method="eth_getLogs")
    seen.add(key)
    seen.add(at)
