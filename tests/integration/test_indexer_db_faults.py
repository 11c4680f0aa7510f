"""Postgres drops the indexer's connections mid-backfill and mid-follow: it steps down, reconnects, re-leads,
and ends with exactly the canonical data."""

from __future__ import annotations

import time

import psycopg
import pytest
from web3 import Web3

from store.engine import libpq_url
from tests.integration.scenario import deploy, ground_truth, indexed_state, run_scenario, settings_for
from tests.integration.test_indexer_reorg import Running

pytestmark = pytest.mark.anvil


def _terminate(db_url: str) -> int:
    with psycopg.connect(libpq_url(db_url), autocommit=True) as c:
        return len(c.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchall())


def test_connections_killed_under_the_indexer(anvil, db_url):
    w3 = Web3(Web3.HTTPProvider(anvil.url))
    dep = deploy(w3)
    run_scenario(w3, dep, actions=80, seed=31)
    anvil.mine(600)
    run_scenario(w3, dep, actions=40, seed=32)
    run = Running(settings_for(anvil.url, dep, db_url, max_block_range=2), db_url)
    try:
        while run.idx.syncs[0].stats.block < 150:
            time.sleep(0.01)
        assert _terminate(db_url) >= 2  # the lease and the work connection
        run.wait_synced(w3, timeout=90)
        run_scenario(w3, dep, actions=20, seed=33)
        time.sleep(0.3)
        _terminate(db_url)
        run_scenario(w3, dep, actions=10, seed=34)
        run.wait_synced(w3, timeout=60)
    finally:
        assert run.stop() == 0
    assert indexed_state(db_url, "dev") == ground_truth(w3, dep)
