"""The indexer daemon (arq style): `run(settings)` until stopped, `run_once(settings)` to catch up and return.

One ChainSync per configured chain, each led by at most one process (indexer.lease). Chains are stepped
round-robin in one thread; a unit of work is one range or one block, and the stop event is checked between
units, so SIGTERM finishes the current block, commits it and exits.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

from core import heap
from core.config import Settings
from core.database import resolve_database_url
from chains.base import ChainReader, ReorgTooDeep, load_family
from chains.rpc import RpcError, RpcTransportError
from indexer import writer
from indexer.lease import Lease
from indexer.pacing import Pacer
from indexer.sync import ChainSync

log = logging.getLogger("carbonledger.indexer")

EXIT_REORG_TOO_DEEP = 3


def chain_reader(name: str, cs: Any) -> tuple[ChainReader, dict[str, str], int]:
    """The chain's reader by family (chains.<family>), the contract addresses it follows and its start block; the
    node must be the configured network (the family's reader checks)."""
    opened = load_family(cs.family).reader.open(name, cs)
    return opened.reader, dict(opened.addresses), opened.start


def build_syncs(settings: Settings, db_url: str | None = None, **kw: object) -> list[ChainSync]:
    url = db_url or resolve_database_url(settings)
    out = []
    for name, cs in settings.chains.items():
        reader, addresses, start = chain_reader(name, cs)
        labels = {}
        if cs.family == "evm":
            from chains.evm.markets import batch_labels

            labels = batch_labels(cs)
        out.append(ChainSync(name, reader, url, addresses=addresses, start_block=start, labels=labels,
                             finality_depth=cs.finality_depth, max_span=cs.max_block_range,
                             shrink_grace_s=cs.shrink_grace_s, follow_finalized=cs.following == "finalized",
                             defer_indexes=settings.database.defer_indexes, **kw))
    return out


class Indexer:
    def __init__(self, settings: Settings, *, db_url: str | None = None, stop: threading.Event | None = None,
                 **sync_kw: object) -> None:
        self.settings = settings
        self.db_url = db_url or resolve_database_url(settings)
        self.stop = stop or threading.Event()
        self.syncs = build_syncs(settings, self.db_url, **sync_kw)
        self.leases = {s.chain: Lease(self.db_url, s.chain) for s in self.syncs}
        self.poll = min((c.poll_interval_s for c in settings.chains.values()), default=1.0)
        self.pacers = {name: Pacer(cs.poll_min_interval_s, cs.poll_interval_s) for name, cs in settings.chains.items()}
        self._lease_checked = {s.chain: 0.0 for s in self.syncs}
        self._failures = {s.chain: 0 for s in self.syncs}
        self._retry_at = {s.chain: 0.0 for s in self.syncs}  # a failing chain is not stepped again before this
        self.wake = threading.Event()  # set by HeadWatchers when a chain pushes a new head
        self.watchers = []
        for name, cs in settings.chains.items():
            if cs.ws_url:
                from indexer.heads import HeadWatcher

                self.watchers.append(HeadWatcher(name, cs.ws_url, self.wake, self.stop, family=cs.family,
                                                 finalized=cs.following == "finalized"))

    def _lead(self, sync: ChainSync) -> bool:
        lease = self.leases[sync.chain]
        if lease.held:
            if time.monotonic() - self._lease_checked[sync.chain] > 2.0:
                self._lease_checked[sync.chain] = time.monotonic()
                if not lease.alive():
                    log.warning("lost leadership", extra={"chain": sync.chain})
                    sync.stats.leader, sync.stats.mode = False, "standby"
            return lease.held
        if lease.try_acquire():
            try:
                sync.load()
            except (psycopg.OperationalError, RpcError, RpcTransportError) as exc:
                lease.release()
                self._trouble(sync, "database" if isinstance(exc, psycopg.OperationalError) else "rpc", exc)
                return False
            log.info("leading chain", extra={"chain": sync.chain})
            sync.stats.leader = True
            return True
        sync.stats.mode = "standby"
        return False

    def _step(self, sync: ChainSync) -> bool:
        try:
            busy = sync.step()
        except writer.Fenced:
            return True  # reloaded; the next step continues from the database's cursor
        except (RpcError, RpcTransportError) as exc:
            self._trouble(sync, "rpc", exc)
            return False
        except psycopg.OperationalError as exc:
            # Database trouble: give up the lead; re-acquiring it reconnects and reloads cursor and state.
            self._trouble(sync, "database", exc)
            self.leases[sync.chain].release()
            sync.disconnect()
            sync.stats.leader, sync.stats.mode = False, "standby"
            return False
        if sync.stats.problem is not None:
            log.info("recovered", extra={"chain": sync.chain, "was": sync.stats.problem})
            sync.stats.problem, self._failures[sync.chain] = None, 0
        return busy

    def _trouble(self, sync: ChainSync, kind: str, exc: Exception) -> None:
        """A failed step: one log line when the problem changes (not one per retry), then back off (up to 30 s)."""
        problem = f"{kind}: {str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else type(exc).__name__}"
        n = self._failures[sync.chain] = self._failures[sync.chain] + 1
        if sync.stats.problem is None or sync.stats.problem.split(":", 1)[0] != kind:
            log.warning(f"{'JSON-RPC node' if kind == 'rpc' else 'database'} unavailable; retrying with backoff",
                        extra={"chain": sync.chain, "error": problem})
        sync.stats.problem = problem
        self._retry_at[sync.chain] = time.monotonic() + min(30.0, 0.25 * 2 ** min(n, 8))

    def run(self, until: Callable[[Indexer], bool] | None = None) -> int:
        """Index until the stop event is set (or `until(self)` is true); returns the process exit code."""
        for w in self.watchers:
            w.start()
        heap.settle()  # start-up is done: see core.heap (the collector was ~40% of a backfill's CPU)
        try:
            while not self.stop.is_set():
                busy = False
                now = time.monotonic()
                for sync in self.syncs:
                    if self.stop.is_set():
                        break
                    if now >= self._retry_at[sync.chain] and self._lead(sync):
                        before = sync.stats.block
                        busy = self._step(sync) or busy
                        if sync.stats.block > before:
                            self.pacers[sync.chain].new_block(time.monotonic())
                if until is not None and until(self):
                    break
                if not busy:
                    t = time.monotonic()
                    held = [self.pacers[s.chain].next_wait(t) for s in self.syncs if self.leases[s.chain].held]
                    wait = min(held) if held else 0.5
                    backing_off = [t - now for t in self._retry_at.values() if t > now]
                    self._idle(max(wait, min(backing_off)) if backing_off and len(backing_off) == len(self.syncs) else wait)
            return 0
        except ReorgTooDeep:
            return EXIT_REORG_TOO_DEEP
        finally:
            self.close()

    def _idle(self, seconds: float) -> None:
        """Wait up to `seconds`, waking early on stop or on a pushed new head."""
        deadline = time.monotonic() + seconds
        while not self.stop.is_set() and (left := deadline - time.monotonic()) > 0:
            if self.wake.wait(min(0.2, left)):
                self.wake.clear()
                return

    def close(self) -> None:
        for w in self.watchers:
            w.close()
        for sync in self.syncs:
            sync.close()
        for lease in self.leases.values():
            lease.release()


def run(settings: Settings, *, stop: threading.Event | None = None, **kw: object) -> int:
    """The daemon: index every configured chain until `stop` is set."""
    return Indexer(settings, stop=stop, **kw).run()


def run_once(settings: Settings, *, db_url: str | None = None, timeout_s: float = 300.0, **kw: object) -> int:
    """Catch every chain up to its current head, then return the exit code (for tests and scripts)."""
    deadline = time.monotonic() + timeout_s
    idx = Indexer(settings, db_url=db_url, **kw)

    def done(i: Indexer) -> bool:
        if time.monotonic() > deadline:
            raise TimeoutError("run_once did not catch up in time")
        return all(s.stats.leader and s.caught_up() for s in i.syncs)

    return idx.run(until=done)
