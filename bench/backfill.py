#!/usr/bin/env python3
"""Cold backfill throughput: EventFlood on anvil -> `carbonledger index` handlers -> Postgres.

Creates >= --events protocol events (BatchCreated/TransferSingle/Minted from `flood`, TransferSingle from
`floodTransfers`, burn+Retired from `floodRetirements`) with EventFlood standing in for CarbonCredit, times a
cold backfill with every handler into a fresh database, then in the same run times a raw binary COPY of the
same number of ledger rows. Holders and batches are a fixed set, so entity count stays constant and memory
should stay flat as --events grows. Ends with one `RESULT key=value ...` line.

    CARBONLEDGER_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \
        .venv/bin/python bench/backfill.py --events 200000
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = os.sysconf("SC_PAGE_SIZE")
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from web3 import Web3  # noqa: E402

from bench.common import scratch_database  # noqa: E402
from core.anvil import Anvil  # noqa: E402
from chains.evm.deploy import deploy_contract  # noqa: E402

HOLDERS, BATCHES, PER_TX = 50, 20, 500


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


def cpu_by_role(anvil_pid: int) -> dict[str, float]:
    """Cumulative CPU seconds of what a backfill runs on: this process (handlers, writes, the fetch thread), anvil,
    and every postgres process (our connections' backends included: read before the indexer closes them)."""
    import psutil

    me = os.times()
    out = {"indexer": me.user + me.system, "anvil": 0.0, "postgres": 0.0}
    for p in psutil.process_iter(["name", "cpu_times"]):
        t = p.info["cpu_times"]
        if t is None:
            continue
        if p.pid == anvil_pid:
            out["anvil"] = t.user + t.system
        elif p.info["name"] == "postgres":
            out["postgres"] += t.user + t.system
    return out


def _box_busy() -> float:
    """CPU seconds the whole machine has spent not idle since boot (every process, exited ones included)."""
    import psutil

    t = psutil.cpu_times()  # Linux: guest time is already inside user time
    return t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)  # not steal: not ours


class PeakRss:
    def __init__(self) -> None:
        self.peak, self._stop = rss_mb(), threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, rss_mb())

    def __enter__(self) -> PeakRss:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


def generate(w3: Web3, target: int) -> tuple[object, int, int]:
    admin = w3.eth.accounts[0]
    dep = deploy_contract(w3, admin, "EventFlood")
    flood = w3.eth.contract(address=dep.address, abi=__import__("chains.evm.artifacts", fromlist=["abi"]).abi("EventFlood"))
    holders = [Web3.to_checksum_address("0x" + f"{i + 1:040x}") for i in range(HOLDERS)]
    tx = {"from": admin, "gas": 25_000_000}
    flood.functions.flood(1, BATCHES, holders, 10**12).transact(tx)
    events = BATCHES * (1 + 2 * HOLDERS)
    n, cert = 0, 1
    while events < target:
        k = min(PER_TX, max(1, target - events))
        batch = 1 + n % BATCHES
        if n % 10 == 9:  # every tenth tx retires: burn + Retired per holder
            hs = [holders[(n + i) % HOLDERS] for i in range(min(k // 2, HOLDERS))] or holders[:1]
            flood.functions.floodRetirements(cert, batch, hs, 1).transact(tx)
            cert += len(hs)
            events += 2 * len(hs)
        else:
            frm = [holders[(n + i) % HOLDERS] for i in range(k)]
            to = [holders[(n + 7 * i + 1) % HOLDERS] for i in range(k)]
            flood.functions.floodTransfers(batch, frm, to, 1).transact(tx)
            events += k
        n += 1
    return dep, events, w3.eth.block_number


def raw_copy(url: str, rows: int) -> float:
    """Binary COPY of `rows` ledger-shaped rows into an unlogged-free plain copy of ledger_entry."""
    from indexer.tables import EVENTS

    lay = EVENTS["ledger_entry"]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE bench_copy (LIKE ledger_entry INCLUDING ALL)")
        cols = dict(chain="bench", tx_hash="0x" + "ab" * 32, log_index=0, seq=0, batch_id=7, operator="0x" + "11" * 20,
                    from_addr="0x" + "22" * 20, to_addr="0x" + "33" * 20, amount=1, kind="transfer", block_number=1,
                    block_hash="0x" + "cd" * 32, block_timestamp=1_700_000_000, tx_index=0)
        row = [cols[c] for c in lay.columns]
        at = lay.columns.index("log_index")
        t0 = time.perf_counter()
        with conn.transaction(), conn.cursor().copy(lay.copy_sql.replace("ledger_entry", "bench_copy")) as cp:
            cp.set_types(list(lay.types))
            for i in range(rows):
                row[at] = i
                cp.write_row(row)
        dt = time.perf_counter() - t0
        conn.execute("DROP TABLE bench_copy")
    return rows / dt


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--profile", action="store_true", help="cProfile the backfill and print the top functions")
    p.add_argument("--no-defer-indexes", dest="defer", action="store_false",
                   help="keep the event and entity tables' indexes during the backfill (database.defer_indexes = false)")
    p.add_argument("--no-pipeline", dest="pipeline", action="store_false",
                   help="write each range before applying the next (the serial loop, for comparison)")
    p.add_argument("--prefetch", type=int, default=None, metavar="N",
                   help="ranges fetched ahead (default: indexer.sync.PREFETCH)")
    p.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="index the same generated chain N times, each into a fresh database, and report the median run "
                        "(the 2-core box's run-to-run spread is ~20%%)")
    args = p.parse_args()
    with Anvil(extra_args=("--gas-limit", "30000000", "--code-size-limit", "100000")) as node:
        w3 = Web3(Web3.HTTPProvider(node.url, request_kwargs={"timeout": 120}))
        t0 = time.perf_counter()
        dep, events, head = generate(w3, args.events)
        gen_s = time.perf_counter() - t0
        print(f"generated {events:,} events in {head} blocks in {gen_s:.1f}s")
        runs = [index_once(args, node, dep) for _ in range(max(1, args.repeat))]
    if len(runs) > 1:
        print("runs (events/s): " + ", ".join(f"{r['events_per_s']:.0f}" for r in runs))
    r = dict(sorted(runs, key=lambda r: r["events_per_s"])[len(runs) // 2])
    r["peak"], r["growth"] = runs[0]["peak"], runs[0]["growth"]  # memory: the first run, from a fresh process
    print(f"RESULT events={r['events']} blocks={head} defer_indexes={args.defer} pipeline={args.pipeline} runs={len(runs)} "
          f"index_s={r['index_s']:.2f} events_per_s={r['events_per_s']:.0f} copy_rows_per_s={r['copy_rps']:.0f} "
          f"ratio={r['events_per_s'] / r['copy_rps']:.3f} peak_rss_mb={r['peak']:.0f} rss_growth_mb={r['growth']:.0f} "
          f"box_busy={r['busy']:.2f} cpu_bound_events_per_s={r['bound']:.0f}")
    return 0


class _IndexBuilds(logging.Handler):
    """Collects how long the indexer spent building the deferred indexes (its "secondary indexes built" record)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seconds = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "secondary indexes built":
            self.seconds += float(getattr(record, "seconds", 0.0))


def index_once(args: argparse.Namespace, node: Anvil, dep: object) -> dict[str, float]:
    """One cold backfill of the generated chain into a fresh database, then raw COPY of as many rows into it."""
    from core.config import ChainSettings, ContractSettings, Settings
    from indexer.runner import Indexer

    with scratch_database("cl_bench") as url:
        settings = Settings(database={"url": url, "defer_indexes": args.defer}, chains={"bench": ChainSettings(
            rpc_url=node.url, finality_depth=0, use_finalized_tag=False, max_block_range=2000,
            contracts={"CarbonCredit": ContractSettings(address=dep.address, start_block=dep.block_number)})})
        kw = {} if args.prefetch is None else {"prefetch": args.prefetch}
        idx = Indexer(settings, db_url=url, pipeline=args.pipeline, **kw)
        base_rss = rss_mb()
        builds, ilog = _IndexBuilds(), logging.getLogger("carbonledger.indexer")
        ilog.addHandler(builds)
        level = ilog.level
        ilog.setLevel(min(ilog.getEffectiveLevel(), logging.INFO))
        prof = __import__("cProfile").Profile() if args.profile else None
        cpu0, box0 = cpu_by_role(node.proc.pid), _box_busy()
        with PeakRss() as mem:
            t0 = time.perf_counter()
            if prof:
                prof.enable()
            cpu1: dict[str, float] = {}

            def done(i: Indexer) -> bool:
                if all(s.stats.leader and s.caught_up() for s in i.syncs):
                    cpu1.update(cpu_by_role(node.proc.pid))  # before run() closes its database backends
                    cpu1["box"], cpu1["wall"] = _box_busy() - box0, time.perf_counter() - t0
                    return True
                return False

            try:
                code = idx.run(until=done)
            finally:
                ilog.removeHandler(builds)
                ilog.setLevel(level)
            idx_s = time.perf_counter() - t0
        if prof:
            prof.disable()
            __import__("pstats").Stats(prof).sort_stats("tottime").print_stats(18)
        indexed = idx.syncs[0].stats.events
        assert code == 0, code
        with psycopg.connect(url) as conn:
            ledger = conn.execute("SELECT count(*) FROM ledger_entry").fetchone()[0]
        copy_rps = raw_copy(url, indexed)
    eps = indexed / idx_s
    print(f"indexed {indexed:,} events ({ledger:,} ledger rows) in {idx_s:.2f}s: {eps:,.0f} events/s")
    if builds.seconds:
        print(f"of which building the deferred secondary indexes after catching up: {builds.seconds:.2f}s")
    print(f"raw binary COPY of {indexed:,} rows: {copy_rps:,.0f} rows/s; ratio {eps / copy_rps:.3f}")
    print(f"peak RSS during backfill {mem.peak:.0f} MB (process baseline before it {base_rss:.0f} MB)")
    cores = os.cpu_count() or 1
    print(f"CPU per event (µs, {cores} cores = {cores * 1e6 / eps:.0f} µs of CPU per event at this rate): "
          + ", ".join(f"{k} {(cpu1[k] - cpu0[k]) * 1e6 / max(indexed, 1):.1f}" for k in cpu0))
    # The whole box until caught up, exited processes (Postgres's parallel index-build workers) and any other load
    # included: how busy it was, and an estimate (on a quiet box) of the rate the same CPU per event would reach
    # with every core busy all the time: cores / CPU seconds per event, a ceiling for overlapping the same work.
    busy = cpu1["box"] / (cores * cpu1["wall"])
    bound = cores * indexed / cpu1["box"]
    print(f"the box was {busy:.0%} busy ({cpu1['box'] * 1e6 / max(indexed, 1):.1f} µs of CPU per event); all {cores} "
          f"cores busy would bound this work at about {bound:,.0f} events/s")
    return {"events": indexed, "index_s": idx_s, "events_per_s": eps, "copy_rps": copy_rps, "peak": mem.peak,
            "growth": mem.peak - base_rss, "busy": busy, "bound": bound}


if __name__ == "__main__":
    sys.exit(main())
