"""Progress for people (a rich live table on a terminal) and for machines (JSON log lines, Prometheus)."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Gauge

from indexer.sync import Stats

log = logging.getLogger("carbonledger.indexer.progress")


class Metrics:
    """Gauges in a private registry, refreshed from Stats on each tick."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        g = lambda name, doc: Gauge(name, doc, ["chain"], registry=self.registry)  # noqa: E731
        self.block, self.head = g("indexer_block", "Last committed block"), g("indexer_head", "Chain head")
        self.lag, self.events = g("indexer_lag_blocks", "Head minus cursor"), g("indexer_events_total", "Events applied")
        self.reorgs, self.leader = g("indexer_reorgs_total", "Reorgs undone"), g("indexer_leader", "1 if this process leads")
        self.rate = g("indexer_events_per_second", "Recent events/s")

    def update(self, s: Stats, rate: float) -> None:
        for gauge, v in ((self.block, s.block), (self.head, s.head), (self.lag, s.lag), (self.events, s.events),
                         (self.reorgs, s.reorgs), (self.leader, int(s.leader)), (self.rate, rate)):
            gauge.labels(s.chain).set(v)


class Progress:
    """Samples Stats every `interval` s from a thread: rich table on a TTY, a JSON log line otherwise."""

    def __init__(self, stats: Sequence[Stats], metrics: Metrics, *, interval: float = 1.0, tty: bool | None = None) -> None:
        self.stats, self.metrics, self.interval = list(stats), metrics, interval
        self.tty = sys.stderr.isatty() if tty is None else tty
        self._stop = threading.Event()
        self._prev: dict[str, tuple[float, int, int]] = {}
        self._rates: dict[str, tuple[float, float]] = {}
        self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)

    def rates(self, s: Stats) -> tuple[float, float]:
        now = time.monotonic()
        t0, b0, e0 = self._prev.get(s.chain, (s.started, max(s.block - s.blocks, 0), 0))
        dt = max(now - t0, 1e-6)
        r = ((s.block - b0) / dt if b0 <= s.block else 0.0, (s.events - e0) / dt)
        self._prev[s.chain] = (now, s.block, s.events)
        self._rates[s.chain] = r
        return r

    def _table(self):
        from rich.table import Table

        t = Table(title="carbonledger index", expand=False)
        for col in ("chain", "mode", "block", "head", "lag", "blocks/s", "events/s", "events", "reorgs", "ETA"):
            t.add_column(col, justify="right")
        for s in self.stats:
            bps, eps = self._rates.get(s.chain, (0.0, 0.0))
            eta = f"{s.lag / bps:,.0f}s" if bps > 0 and s.lag > 0 else "-"
            t.add_row(s.chain, s.mode, f"{s.block:,}", f"{s.head:,}", f"{s.lag:,}", f"{bps:,.1f}", f"{eps:,.0f}",
                      f"{s.events:,}", str(s.reorgs), eta)
        return t

    def _loop(self) -> None:
        live = None
        if self.tty:
            from rich.console import Console
            from rich.live import Live

            live = Live(self._table(), console=Console(stderr=True), refresh_per_second=4)
            live.start()
        next_log = 0.0
        try:
            while not self._stop.wait(self.interval):
                for s in self.stats:
                    bps, eps = self.rates(s)
                    self.metrics.update(s, eps)
                    if not self.tty and time.monotonic() >= next_log:
                        log.info("progress", extra={"chain": s.chain, "mode": s.mode, "block": s.block, "head": s.head,
                                                    "lag": s.lag, "blocks_per_s": round(bps, 1), "events_per_s": round(eps),
                                                    "events": s.events, "reorgs": s.reorgs})
                if not self.tty and time.monotonic() >= next_log:
                    next_log = time.monotonic() + 10
                if live is not None:
                    live.update(self._table())
        finally:
            if live is not None:
                live.stop()

    def start(self) -> Progress:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
