"""The progress table and metrics render from Stats alone."""

from __future__ import annotations

from prometheus_client import generate_latest
from rich.console import Console

from indexer.progress import Metrics, Progress
from indexer.sync import Stats


def test_table_and_metrics_render():
    s = Stats("dev", block=120, head=200, finalized=188, events=5000, blocks=120, mode="backfill", leader=True)
    m = Metrics()
    p = Progress([s], m, tty=False)
    bps, eps = p.rates(s)
    assert bps > 0 and eps > 0
    m.update(s, eps)
    console = Console(record=True, width=200)
    console.print(p._table())
    out = console.export_text()
    assert "backfill" in out and "120" in out and "80" in out  # lag = head - block
    text = generate_latest(m.registry).decode()
    assert 'indexer_block{chain="dev"} 120.0' in text and 'indexer_lag_blocks{chain="dev"} 80.0' in text
