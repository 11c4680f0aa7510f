"""Crash safety and leader failover with real `carbonledger index` subprocesses killed by SIGKILL."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pytest
from web3 import Web3

from core.anvil import free_port
from indexer.runner import run_once
from tests import seeds
from tests.integration.scenario import deploy, dump, index_env, run_scenario, settings_for

pytestmark = [pytest.mark.anvil, pytest.mark.slow]
ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


def _spawn(settings, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "carbonledger.cli", "index", "--no-progress", *args],
                            cwd=ROOT, env=index_env(settings), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _reference(pg_factory, anvil_url, dep, **kw) -> dict:
    url = pg_factory.fresh()
    try:
        assert run_once(settings_for(anvil_url, dep, url, **kw), db_url=url) == 0
        return dump(url)
    finally:
        pg_factory.drop(url)


def _cursor(db_url: str) -> int:
    import psycopg

    from store.engine import libpq_url

    with psycopg.connect(libpq_url(db_url)) as conn:
        row = conn.execute("SELECT block_number FROM indexer_cursor").fetchone()
    return row[0] if row else -1


def test_sigkill_twenty_times_during_backfill_and_follow(anvil, db_url, pg_factory):
    w3 = Web3(Web3.HTTPProvider(anvil.url))
    dep = deploy(w3)
    for k in range(4):  # protocol data spread through a long backfill of one-block ranges: many commits to land in
        run_scenario(w3, dep, actions=30, seed=3 + k)
        anvil.mine(600)
    backfill_to = w3.eth.block_number
    settings = settings_for(anvil.url, dep, db_url, max_block_range=1)
    rng = seeds.rng(11)
    cursors = []
    for i in range(20):
        before, head = _cursor(db_url), w3.eth.block_number
        proc = _spawn(settings, "--port", "-1")
        # Kill at a random moment once it is working (its cursor moved), however long start-up took on a busy box;
        # when there is nothing left to do, at a random moment after start.
        deadline = time.monotonic() + 60
        while before < head and _cursor(db_url) == before and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.6))
        proc.kill()
        proc.wait()
        cursors.append(dump(db_url)["cursor"])
        # The chain moves on while the indexer is down, so follow mode has blocks to do too; after every fourth kill
        # it does not, so an idle start is killed as well. (Moving it after every other kill left the cursor moving
        # between only 9 of the 19 pairs in one full run, once the backfill of one-block ranges got faster.)
        if i % 4 != 3:
            run_scenario(w3, dep, actions=4, seed=100 + i)
    # The kills landed while work was going on: the cursor moved between many of them, not all at the end.
    moved = sum(1 for a, b in zip(cursors, cursors[1:]) if a != b)
    assert moved >= 10, cursors
    during = sum(1 for c in cursors if c and 0 < c[0][1] < backfill_to)  # killed with backfill ranges still to do
    assert during >= 3, (during, cursors)
    final = _spawn(settings, "--port", "-1", "--once")
    assert final.wait(120) == 0, final.stderr.read().decode()[-2000:]
    assert dump(db_url) == _reference(pg_factory, anvil.url, dep, max_block_range=50)


def _mode(port: int) -> dict:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/ready", timeout=5).json()["chains"]["dev"]
    except (httpx.HTTPError, ValueError, KeyError):
        return {}


def test_standby_takes_over_when_leader_is_killed(anvil, db_url, pg_factory):
    w3 = Web3(Web3.HTTPProvider(anvil.url))
    dep = deploy(w3)
    run_scenario(w3, dep, actions=60, seed=5)
    anvil.mine(3000)
    run_scenario(w3, dep, actions=60, seed=6)
    settings = settings_for(anvil.url, dep, db_url, max_block_range=3)
    ports = [free_port(), free_port()]
    procs = [_spawn(settings, "--port", str(p)) for p in ports]
    try:
        # Generous deadlines for start-up on a loaded machine: these wait on conditions, not on a clock.
        deadline = time.monotonic() + 120
        leader = None
        while leader is None and time.monotonic() < deadline:
            for i, p in enumerate(ports):
                m = _mode(p)
                if m.get("mode") == "backfill" and m.get("block", 0) > 100:
                    leader = i
            time.sleep(0.05)
        assert leader is not None, "nobody started backfilling"
        standby = 1 - leader
        # The second process may still be starting (its HTTP server not up, or not yet asked for the lease).
        while _mode(ports[standby]).get("mode") != "standby" and time.monotonic() < deadline + 60:
            assert procs[standby].poll() is None, procs[standby].stderr.read().decode()[-2000:]
            time.sleep(0.05)
        assert _mode(ports[standby]).get("mode") == "standby"
        procs[leader].kill()
        procs[leader].wait()
        killed_at = time.monotonic()
        # The lease is a session advisory lock: Postgres frees it when the leader's connection drops, and the standby
        # polls it every lease interval. 30 s leaves room for a loaded machine; a broken takeover never happens.
        while _mode(ports[standby]).get("mode") in (None, "standby") and time.monotonic() - killed_at < 30:
            time.sleep(0.05)
        assert time.monotonic() - killed_at < 30, "standby did not take over"
        head = w3.eth.block_number
        while _mode(ports[standby]).get("block", -1) < head and time.monotonic() - killed_at < 90:
            time.sleep(0.2)
        assert _mode(ports[standby]).get("block") == head
        metrics = httpx.get(f"http://127.0.0.1:{ports[standby]}/metrics", timeout=2).text
        assert f'indexer_block{{chain="dev"}} {float(head)}' in metrics or "indexer_block" in metrics
        assert httpx.get(f"http://127.0.0.1:{ports[standby]}/ready", timeout=2).status_code == 200
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)
    assert procs[standby].returncode == 0  # SIGTERM: finish the block, flush, exit 0
    assert dump(db_url) == _reference(pg_factory, anvil.url, dep, max_block_range=200)


def test_sigterm_mid_backfill_commits_and_exits_zero(anvil, db_url):
    w3 = Web3(Web3.HTTPProvider(anvil.url))
    dep = deploy(w3)
    run_scenario(w3, dep, actions=20, seed=8)
    anvil.mine(800)
    settings = settings_for(anvil.url, dep, db_url, max_block_range=1)
    port = free_port()
    proc = _spawn(settings, "--port", str(port))
    try:
        deadline = time.monotonic() + 30
        while not (_mode(port).get("mode") == "backfill" and _mode(port).get("block", 0) > 50):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.02)
        seen = _mode(port)["block"]
        proc.terminate()
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    cursor = dump(db_url)["cursor"][0][1]
    assert seen <= cursor < w3.eth.block_number  # stopped mid-backfill, with what it had done committed
