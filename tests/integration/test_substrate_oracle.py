"""The oracle on a Substrate chain (chopsticks): IoT anchor intents become `remark_with_event` extrinsics exactly
once although `carbonledger oracle run` is SIGKILLed again and again mid-way; the indexer then finds each root
anchored once (a second remark of a root would be an "already anchored" indexing error)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psycopg
import pytest

from indexer.runner import run_once
from oracle.outbox import Intent, insert_intent
from store.engine import libpq_url
from tests import seeds
from tests.integration.test_substrate_indexer import substrate_settings

pytestmark = [pytest.mark.chopsticks, pytest.mark.slow]
ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
SEED = "0x" + "5e" * 32
ROOTS = ["0x" + bytes([k]).hex() * 32 for k in range(1, 7)]


def _statuses(db_url: str) -> list[str]:
    with psycopg.connect(libpq_url(db_url)) as conn:
        return [r[0] for r in conn.execute("SELECT status FROM oracle_intent ORDER BY id")]


def _progress(db_url: str) -> int:
    with psycopg.connect(libpq_url(db_url)) as conn:
        return conn.execute("SELECT count(*) FROM oracle_attempt").fetchone()[0] + \
            conn.execute("SELECT count(*) FROM oracle_intent WHERE status = 'confirmed'").fetchone()[0]


def test_anchors_are_written_exactly_once_across_kills(chopsticks, db_url, tmp_path):
    from substrateinterface import Keypair, KeypairType

    chop = chopsticks(mode="Instant")
    oracle_key = Keypair.create_from_seed(SEED, crypto_type=KeypairType.SR25519)
    chop.fund({oracle_key.ss58_address: 10**18})
    with psycopg.connect(libpq_url(db_url)) as conn, conn.transaction():
        for k, root in enumerate(ROOTS):
            insert_intent(conn.cursor(), "ah", Intent(f"iot:{k}", "iot", "IoTAnchor", "anchor",
                                                      [root, 4 + k, 1_700_000_000, 1_700_000_600, 90]))
    cfg = tmp_path / "oracle.toml"
    cfg.write_text(f'[database]\nurl = "{db_url}"\n[chains.ah]\nfamily = "substrate"\nrpc_url = "{chop.url}"\n'
                   f'ws_url = "{chop.ws_url}"\n[oracle]\nchain = "ah"\nport = 0\nanchor_interval_s = 3600\n'
                   f'poll_interval_s = 0.05\nlease_heartbeat_s = 0.2\nmax_in_flight = 2\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARBONLEDGER_")}
    env["CARBONLEDGER_SIGNER_KEY"] = SEED

    def spawn() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "carbonledger.cli", "oracle", "run", "--config", str(cfg)],
                                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    rng = seeds.rng(17)
    kills = 0
    while kills < 10 and any(s != "confirmed" for s in _statuses(db_url)):
        before = _progress(db_url)
        proc = spawn()
        deadline = time.monotonic() + 120
        while _progress(db_url) == before and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)  # until it has signed or confirmed something (start-up loads the runtime: seconds)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        time.sleep(rng.uniform(0.0, 1.2))  # in Instant mode a block takes about a second of CPU
        proc.kill()
        proc.wait()
        kills += 1
    proc = spawn()
    try:
        deadline = time.monotonic() + 300
        while any(s != "confirmed" for s in _statuses(db_url)) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            time.sleep(0.2)
        assert _statuses(db_url) == ["confirmed"] * len(ROOTS)
    finally:
        proc.terminate()
        proc.wait(30)
    assert kills >= 3
    # The chain's own word: each root remarked once, by the oracle's key, in the extrinsic the outbox names.
    assert run_once(substrate_settings(chop.url, db_url, oracle_key.ss58_address), db_url=db_url, timeout_s=300) == 0
    with psycopg.connect(libpq_url(db_url)) as conn:
        anchors = dict(conn.execute("SELECT root, tx_hash FROM iot_anchor").fetchall())
        errors = conn.execute("SELECT message FROM indexing_error").fetchall()
        intents = dict(conn.execute("SELECT args->>0, tx_hash FROM oracle_intent").fetchall())
    assert errors == []
    assert sorted(anchors) == sorted(ROOTS)
    assert anchors == intents
