"""Live updates: one LISTEN connection per API process, fanned out to its subscribers.

The indexer sends one small JSON notice on `carbonledger_live` inside each commit (`{"t": "block", chain, from, to,
hash, kinds, xid}`) and each reorg undo (`{"t": "reorg", chain, from, to, hash, xid}`, the retraction of blocks
from..to); a trigger on oracle_intent sends `{"t": "intent", key, status, ...}` (store migration 0003). Postgres
delivers a notice only after its transaction committed, in commit order, so a notice never precedes its data.

`Hub` holds the listener and the subscribers. Each subscriber has a bounded queue: the hub never waits for one;
a subscriber whose queue is full is a slow consumer, dropped at once (its transport is closed with SLOW_CONSUMER),
so one slow client can neither stall the others nor make the process buffer without bound. If the listener's
connection is lost, notices may have been missed: every subscriber is closed with LISTENER_LOST (clients resume
with `since`, which replays from the versioned rows), and the hub reconnects.

`xid` is the notifying transaction's id. A subscriber that reads history first (`since`) records the snapshot it
read in (`Snapshot`); a buffered notice whose transaction that snapshot already saw is skipped, the others applied:
no gap and no duplicate between history and live.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import orjson
import psycopg

from store.engine import libpq_url

log = logging.getLogger("gqlapi.live")

CHANNEL = "carbonledger_live"
# graphql-transport-ws close codes (4400-4499 are the protocol's; these name what happened).
SLOW_CONSUMER = 4420
LISTENER_LOST = 4503


class LiveClosed(Exception):
    """A subscription ended by the server: `code` is the WebSocket close code, the message its reason."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


class LimitReached(Exception):
    """A new subscription over a configured limit (per client, per process)."""


class Snapshot:
    """A Postgres snapshot (`pg_current_snapshot()::text`, 'xmin:xmax:xip,...'): which committed transactions it saw."""

    def __init__(self, text: str) -> None:
        xmin, xmax, xip = text.split(":")
        self.xmin, self.xmax = int(xmin), int(xmax)
        self.xip = {int(x) for x in xip.split(",") if x}

    def saw(self, xid: int) -> bool:
        """Whether the snapshot sees the (committed) transaction `xid`."""
        return xid < self.xmin or (xid < self.xmax and xid not in self.xip)


class Subscriber:
    """One subscription's inbox. `get()` returns the next notice, or raises LiveClosed once the hub dropped it."""

    __slots__ = ("hub", "client", "chains", "types", "queue", "closed", "on_close", "__weakref__")

    def __init__(self, hub: "Hub", client: str, chains: frozenset[str] | None, size: int,
                 on_close: Callable[[LiveClosed], Any] | None, types: frozenset[str] | None = None) -> None:
        self.hub, self.client, self.chains, self.types = hub, client, chains, types
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(size)
        self.closed: LiveClosed | None = None
        self.on_close = on_close

    def wants(self, notice: dict[str, Any]) -> bool:
        return (self.chains is None or notice.get("chain") in self.chains) and (
            self.types is None or notice.get("t") in self.types)

    def put(self, notice: dict[str, Any]) -> None:
        if self.closed is not None:
            return
        try:
            self.queue.put_nowait(notice)
        except asyncio.QueueFull:
            self.close(LiveClosed(SLOW_CONSUMER, f"slow consumer: more than {self.queue.maxsize} messages waiting; "
                                                 "resume with `since`"))

    def close(self, why: LiveClosed) -> None:
        """Drop this subscriber: no more notices; the reader's next get() raises `why`; the transport is told."""
        if self.closed is not None:
            return
        self.closed = why
        self.hub.remove(self)
        while not self.queue.empty():  # free the memory now; a waiting get() wakes on the sentinel
            self.queue.get_nowait()
        self.queue.put_nowait(None)
        if self.on_close is not None:
            with contextlib.suppress(Exception):
                self.on_close(why)

    def detach(self) -> None:
        """The subscription ended (client completed, error): leave the hub without closing the transport."""
        self.on_close = None
        self.hub.remove(self)
        if self.closed is None:
            self.closed = LiveClosed(1000, "subscription ended")

    async def get(self) -> dict[str, Any]:
        notice = await self.queue.get()
        if notice is None:
            assert self.closed is not None
            raise self.closed
        return notice


class Hub:
    """The process's listener and its subscribers (see the module docstring)."""

    def __init__(self, database_url: str, *, queue_size: int = 256, max_subscribers: int = 10_000,
                 per_client: int = 100) -> None:
        self.conninfo = libpq_url(database_url)
        self.queue_size, self.max_subscribers, self.per_client = queue_size, max_subscribers, per_client
        self.subscribers: set[Subscriber] = set()
        self.by_client: dict[str, int] = {}
        self.connected = asyncio.Event()
        self.notices = 0
        self.dropped = 0  # slow consumers disconnected
        self._task: asyncio.Task | None = None
        self._conn: psycopg.AsyncConnection | None = None
        self._shared: dict[Any, asyncio.Task] = {}
        self._tasks: set[asyncio.Task] = set()

    # -- lifecycle -------------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="live-listener")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        for sub in list(self.subscribers):
            sub.close(LiveClosed(1001, "server shutting down"))

    async def _run(self) -> None:
        backoff = 0.5
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                        self.conninfo, autocommit=True, application_name="carbonledger-api-live") as conn:
                    self._conn = conn
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.connected.set()
                    backoff = 0.5
                    log.info("listening for live notices")
                    async for n in conn.notifies():
                        self.dispatch(n.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any trouble: tell subscribers, reconnect with backoff
                if self.connected.is_set():
                    log.warning("live listener lost its connection; reconnecting", extra={"error": str(exc)[:200]})
            finally:
                self._conn = None
            if self.connected.is_set():
                self.connected.clear()
                for sub in list(self.subscribers):  # notices may have been missed: no silent gap
                    sub.close(LiveClosed(LISTENER_LOST, "the server lost its database listener; resume with `since`"))
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)

    # -- fan-out ---------------------------------------------------------------------------------------------
    def dispatch(self, payload: str) -> None:
        """Hand one notice to every subscriber that wants it (never waits: full queues are slow consumers)."""
        try:
            notice = orjson.loads(payload)
            notice["xid"] = int(notice["xid"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("unreadable live notice ignored", extra={"payload": payload[:200]})
            return
        self.notices += 1
        for sub in list(self.subscribers):
            if sub.wants(notice):
                sub.put(notice)

    def subscribe(self, client: str, chains: frozenset[str] | None = None,
                  on_close: Callable[[LiveClosed], Any] | None = None, types: frozenset[str] | None = None) -> Subscriber:
        """A new subscriber to the notices of `chains` and `types` (None: all); LimitReached over the per-client or
        per-process limit."""
        if self._task is not None and not self.connected.is_set():
            # Notices committed now would never reach it (nothing listens): refuse rather than open a silent gap.
            raise LimitReached("the server is reconnecting to its database listener; resume with `since` shortly")
        if len(self.subscribers) >= self.max_subscribers:
            raise LimitReached(f"this server has {self.max_subscribers} live subscriptions, its limit; retry later")
        if self.by_client.get(client, 0) >= self.per_client:
            raise LimitReached(f"this client already has {self.per_client} live subscriptions, the limit per client")
        sub = Subscriber(self, client, chains, self.queue_size, on_close, types)
        self.subscribers.add(sub)
        self.by_client[client] = self.by_client.get(client, 0) + 1
        return sub

    def remove(self, sub: Subscriber) -> None:
        if sub in self.subscribers:
            self.subscribers.discard(sub)
            left = self.by_client.get(sub.client, 1) - 1
            if left > 0:
                self.by_client[sub.client] = left
            else:
                self.by_client.pop(sub.client, None)
            if sub.closed is not None and sub.closed.code == SLOW_CONSUMER:
                self.dropped += 1

    def background(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def shared(self, key: Any, make: Callable[[], Any]) -> Any:
        """The result of `make()` (a coroutine) for `key`, computed once for all subscribers asking at about the
        same time: a notice concerning N subscribers costs one query per stream, not N."""
        task = self._shared.get(key)
        if task is None:
            task = self._shared[key] = asyncio.ensure_future(make())
            task.add_done_callback(lambda _t: asyncio.get_running_loop().call_later(5.0, self._shared.pop, key, None))
        return await asyncio.shield(task)
