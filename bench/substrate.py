#!/usr/bin/env python3
"""Substrate cold backfill throughput: a credit ledger on chopsticks (real Asset Hub runtime) -> the indexer.

Builds `--blocks` blocks of `--per-block` signed `assets.transfer` extrinsics each (plus the asset's creation and
mints), then times a cold backfill of the finalized chain into a fresh database with every handler. Reports
neutral events/s (each Transferred is one TransferSingle) and Substrate blocks/s, and separately the one-off
metadata decoding of the runtime (seconds, once per runtime version per process). Chopsticks costs about a second
of CPU per block on a 2-core box, so generation dominates the wall time: keep sizes small. Ends with one
`RESULT key=value ...` line.

    CARBONLEDGER_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \
        .venv/bin/python bench/substrate.py --blocks 20 --per-block 50
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
from core.chopsticks import Chopsticks, missing  # noqa: E402

ASSET = 4242


def generate(chop: Chopsticks, blocks: int, per_block: int) -> int:
    """The ledger; returns the number of Assets.Transferred events submitted."""
    from substrateinterface import Keypair, SubstrateInterface

    si = SubstrateInterface(url=chop.ws_url)
    admin = Keypair.create_from_uri("//Alice")
    holders = [Keypair.create_from_uri(f"//bench{i}") for i in range(per_block)]
    chop.fund({admin.ss58_address: 10**18, **{h.ss58_address: 10**15 for h in holders}})
    nonce = {k.ss58_address: 0 for k in (admin, *holders)}

    def submit(who, module, fn, **params):
        ext = si.create_signed_extrinsic(call=si.compose_call(module, fn, params), keypair=who,
                                         nonce=nonce[who.ss58_address], era={"period": 256})
        nonce[who.ss58_address] += 1
        si.rpc_request("author_submitExtrinsic", [str(ext.data)])

    submit(admin, "Assets", "create", id=ASSET, admin=admin.ss58_address, min_balance=1)
    chop.new_block()
    for h in holders:
        submit(admin, "Assets", "mint", id=ASSET, beneficiary=h.ss58_address, amount=10**24)
    chop.new_block()
    sent = 0
    for b in range(blocks):
        for i, h in enumerate(holders):  # each holder pays the next one: one extrinsic per sender per block
            submit(h, "Assets", "transfer", id=ASSET, target=holders[(i + 1) % len(holders)].ss58_address,
                   amount=10**12 + b)
            sent += 1
        chop.new_block()
    si.close()
    return sent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--blocks", type=int, default=20)
    p.add_argument("--per-block", type=int, default=50)
    args = p.parse_args()
    why = missing()
    if why:
        print(f"substrate bench skipped: {why}")
        print("RESULT skipped=1")
        return 0
    with scratch_database("cl_bench_sub") as url, Chopsticks(mode="Manual") as chop:
        t0 = time.perf_counter()
        sent = generate(chop, args.blocks, args.per_block)
        head = chop.head_number()
        print(f"generated {sent:,} transfers in {head} blocks in {time.perf_counter() - t0:.1f}s")

        from core.config import Settings
        from indexer.runner import Indexer

        settings = Settings(database={"url": url}, chains={"bench": {
            "family": "substrate", "rpc_url": chop.url, "request_timeout_s": 60.0,
            "assets": {ASSET: {"project_id": "BENCH", "vintage": 2025}}}})
        idx = Indexer(settings, db_url=url)
        sync = idx.syncs[0]
        t0 = time.perf_counter()
        sync.reader.runtimes.get(int(chop.rpc("state_getRuntimeVersion")["specVersion"]),
                                 chop.rpc("chain_getBlockHash", [0]))  # metadata decoding, timed apart
        meta_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        code = idx.run(until=lambda i: all(s.stats.leader and s.caught_up() for s in i.syncs))
        idx_s = time.perf_counter() - t0
        assert code == 0, code
        events = sync.stats.events
        eps, bps = events / idx_s, head / idx_s
        load = os.getloadavg()[0]
        print(f"runtime metadata decoded once in {meta_s:.2f}s")
        print(f"indexed {events:,} events of {head} blocks in {idx_s:.2f}s: {eps:,.0f} events/s, {bps:,.1f} blocks/s "
              f"(load average {load:.1f})")
        print(f"RESULT events={events} blocks={head} index_s={idx_s:.2f} events_per_s={eps:.0f} "
              f"blocks_per_s={bps:.1f} metadata_s={meta_s:.2f} load1={load:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
