#!/usr/bin/env python3
"""Aptos throughput on the stand-in fullnode: writes/s of the writer and versions/s of a cold indexer backfill.

Writes: `--txs` entry-function transactions (`carbon_credit::mint`, then `iot_verification::store_data_hash`)
built, signed (aptos-sdk, ed25519) and hashed locally with pipelined sequence numbers, submitted as BCS, committed
in blocks of `--per-block`; the figure is signed+submitted transactions per second (gas from one simulation per
kind, not per transaction). Indexing: a cold backfill of every version (block metadata, user transactions,
epilogues) into a fresh database with every handler. The stand-in answers from memory: these figures are the
adapter's and the indexer's costs, not a real node's latency. Ends with one `RESULT key=value ...` line.

    CARBONLEDGER_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/aptos.py --txs 5000
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import scratch_database  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--txs", type=int, default=5000)
    p.add_argument("--per-block", type=int, default=50)
    args = p.parse_args()

    from aptos_sdk.account import Account

    from chains.aptos.standin import StandInNode
    from chains.aptos.writer import AptosWriter
    from chains.base import TxRequest
    from core.config import Settings
    from indexer.runner import Indexer

    admin, holder = Account.generate(), Account.generate()
    node = StandInNode(str(admin.address()), auto_commit=False)
    node.grant("oracle", str(admin.address()))
    url = node.start()
    try:
        w = AptosWriter("bench", url, admin, str(admin.address()))
        nonce = w.next_nonce()
        batch = TxRequest("bench", "carbon_credit", "create_batch", ("BENCH", 2025, "M", "R", "S", "0x" + "00" * 32))
        h, raw = w.sign(batch, nonce, w.fees(batch, nonce))
        w.submit(raw)
        node.commit()
        nonce += 1
        kinds = [lambda i: TxRequest("bench", "CarbonCredit", "mint", (str(holder.address()), 1, 1 + i % 7,
                                                                        "0x" + i.to_bytes(32, "big").hex())),
                 lambda i: TxRequest("bench", "IoTAnchor", "anchor", ("0x" + (i + 1).to_bytes(32, "big").hex(), 8, i,
                                                                      i + 60, 90))]
        fees = [w.fees(k(0), nonce) for k in kinds]
        t0 = time.perf_counter()
        sign_s = 0.0
        for i in range(args.txs):
            s0 = time.perf_counter()
            h, raw = w.sign(kinds[i % 2](i), nonce + i, fees[i % 2])
            sign_s += time.perf_counter() - s0
            got = w.submit(raw)
            assert got == h, got
            if (i + 1) % args.per_block == 0:
                node.commit()
        node.commit()
        write_s = time.perf_counter() - t0
        assert node.seq[w.address()] == nonce + args.txs, "not every write committed"
        assert w.status(h).state.value == "mined"
        wps = args.txs / write_s
        print(f"signed and submitted {args.txs:,} transactions in {write_s:.2f}s: {wps:,.0f} writes/s "
              f"(signing alone {args.txs / sign_s:,.0f}/s)")

        tip = node.ledger_version
        with scratch_database("cl_bench_apt") as db:
            settings = Settings(database={"url": db}, chains={"bench": {
                "family": "aptos", "rpc_url": url, "aptos_package": str(admin.address()), "chain_id": 4,
                "max_block_range": 2000}})
            idx = Indexer(settings, db_url=db)
            sync = idx.syncs[0]
            t0 = time.perf_counter()
            code = idx.run(until=lambda i: all(s.stats.leader and s.caught_up() for s in i.syncs))
            idx_s = time.perf_counter() - t0
            assert code == 0, code
            events = sync.stats.events
        vps = (tip + 1) / idx_s
        load = os.getloadavg()[0]
        print(f"indexed {tip + 1:,} versions ({events:,} neutral events) in {idx_s:.2f}s: {vps:,.0f} versions/s, "
              f"{events / idx_s:,.0f} events/s (load average {load:.1f})")
        print(f"RESULT txs={args.txs} writes_per_s={wps:.0f} sign_per_s={args.txs / sign_s:.0f} versions={tip + 1} "
              f"events={events} index_s={idx_s:.2f} versions_per_s={vps:.0f} load1={load:.1f}")
    finally:
        node.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
