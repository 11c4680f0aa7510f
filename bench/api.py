#!/usr/bin/env python3
"""GraphQL API latency against raw SQL, on a database loaded with --events ledger events.

Loads synthetic but indexer-shaped rows through the indexer's bulk path (binary COPY with the layouts of
indexer/tables.py) into a fresh database: ledger entries (mints, transfers, listings, sales, burns) with their
mint/trade/retirement rows, current and historical versions of batches, holdings and listings, and one owner
("the whale") holding 100 batches. Every certificate ends a custody chain (mint -> 1-3 transfers -> listing ->
sale -> retirement, one step per block, amid background traffic in the same batches), so its provenance has at
least 5 hops; the run prints the lengths of the certificates it asks for. Then it serves the API with uvicorn (--workers processes) in a subprocess and,
with lean keep-alive HTTP clients (bench/common.HttpClient) at --concurrency, measures p50/p99 and requests/s of
`portfolio` (the whale), `certificate` with `provenance`, and `marketStats`; in the same run, alternating with the
API in rounds, it times the equivalent raw SQL (the resolvers' own queries over a psycopg async pool at the same
concurrency) and prints both, their ratio, and the CPU each side spent per request (API server, its client,
Postgres). Last line: RESULT ... (it names events, concurrency, workers, requests and the machine's cores, so runs
can be compared). The API runs with its answer cache off (api.answer_cache_mb = 0; `--answer-cache` keeps it):
a repeated question would otherwise be answered from memory, which says nothing about execution against its SQL.

Default concurrency 8: four requests in flight per core on the 2-core reference box, enough to keep one server
process busy while requests wait on Postgres and to make the p99 include queueing, i.e. "under concurrency" as
the issue asks, rather than 1 client measuring latency without contention. --workers defaults to one per core,
the deployment a CPU-bound Python server runs in (`carbonledger serve --workers N`), so the API can use the cores
that the raw-SQL side's Postgres backends use; `--workers 1` measures a single process.

    CARBONLEDGER_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \
        .venv/bin/python bench/api.py --events 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "graphql")]

import httpx  # noqa: E402
import orjson  # noqa: E402
import psycopg  # noqa: E402
from psycopg.rows import dict_row  # noqa: E402
from psycopg_pool import AsyncConnectionPool  # noqa: E402

from bench.common import wait_http, wait_listeners  # noqa: E402
from gqlapi.resolvers.market import stats_sql  # noqa: E402
from gqlapi.resolvers.portfolio import portfolio_sql  # noqa: E402
from gqlapi.resolvers.provenance_sql import certificate_bundle_sql, certificate_provenance  # noqa: E402
from indexer.tables import EVENTS, VERSIONED  # noqa: E402
from store.engine import libpq_url  # noqa: E402

CHAIN = "bench"
WHALE = "0x" + "77" * 20
MARKET = "0x" + "ab" * 20
ZERO = "0x" + "0" * 40
PER_BLOCK = 20
ROUNDS = 10  # API and SQL batches alternate this many times per query kind

PORTFOLIO_Q = """query($o: String!) { portfolio(owner: $o) { totals { balance value retired }
  holdings { batchId tradable listed retired lastPrice value batch { projectId vintage methodology registry serialNumber } } } }"""
CERT_Q = """query($id: BigInt!) { certificate(id: $id, chain: "bench") { id holder beneficiary amount txHash blockNumber time
  batch { projectId vintage } provenance { kind txHash blockNumber logIndex timestamp fromAddress toAddress amount paymentRef verificationHash } } }"""
STATS_Q = """query($b: BigInt!) { marketStats(batchId: $b, chain: "bench", window: DAY) { volume tradeCount vwap lastPrice high low
  change floor openListings } }"""


def addr(n: int) -> str:
    return "0x" + f"{n:040x}"


def txh(n: int) -> str:
    return "0x" + f"{n:064x}"


class Loader:
    """Buffers rows per table and writes them with binary COPY in the indexer's column order."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn, self.rows = conn, {}

    def add(self, table: str, **row: object) -> None:
        self.rows.setdefault(table, []).append(row)

    def flush(self) -> None:
        for table, rows in self.rows.items():
            lay = EVENTS.get(table) or VERSIONED[table]
            with self.conn.cursor().copy(lay.copy_sql) as cp:
                cp.set_types(list(lay.types))
                for r in rows:
                    cp.write_row([r.get(c) for c in lay.columns])
        self.rows = {}


def load(url: str, events: int, seed: int) -> dict:
    """Write `events` ledger events (plus companions and state) and return what the queries need."""
    rnd = random.Random(seed)
    n_batches = min(2000, max(150, events // 500))
    n_holders = min(10000, max(300, events // 100))
    blocks = events // PER_BLOCK + 2
    now = int(time.time())
    t0 = now - blocks * 2
    ts = lambda b: t0 + 2 * b  # noqa: E731
    holders = [addr(i + 1) for i in range(n_holders)]
    certs: list[tuple[int, int]] = []
    with psycopg.connect(url, autocommit=False) as conn:
        ld = Loader(conn)
        for b in range(1, n_batches + 1):
            ld.add("credit_batch", chain=CHAIN, batch_id=b, protocol="carbonledger", project_id=f"PRJ-{b % 97}", vintage=2015 + b % 10,
                   methodology="VM0042", registry="Verra", serial_number=f"SN-{b}", metadata_hash=txh(b), created_block=1,
                   created_tx=txh(b), total_minted=10**9, total_retired=0, valid_from=1, valid_to=None)
            for k in range(3):  # listings: active at three prices
                lid = b * 10 + k
                ld.add("listing", chain=CHAIN, listing_id=lid, seller=holders[(b + k) % n_holders], batch_id=b,
                       price_per_unit=10**15 * (5 + k), amount_listed=1000, amount_remaining=1000 - 100 * k, amount_sold=100 * k,
                       status="active", created_block=1, created_tx=txh(lid), valid_from=1, valid_to=None)
        # Ledger events: ~45% belong to custody chains that end in a retirement (mint -> 1-3 transfers -> listing ->
        # sale -> retirement: 5-7 hops, one block or more apart, as the indexer writes them: a ledger entry per
        # ERC-1155 movement at log i and its companion row at log i+1, the listing's versions closed by its sale);
        # the rest is background traffic in the same batches (mints, transfers, sales on the standing listings).
        cert, chains, chain_listing, hops = 0, [], 10**6, []
        in_flight = min(2000, max(40, events // 500))  # custody chains under way at once
        i = 0
        while i < events:
            block, log = i // PER_BLOCK + 1, (i % PER_BLOCK) * 2
            tx = txh(10**6 + i)
            base = dict(chain=CHAIN, tx_hash=tx, block_number=block, block_hash=txh(block), block_timestamp=ts(block))
            r = rnd.random()
            if i >= n_batches and r < 0.45:
                if len(chains) < in_flight and (not chains or rnd.random() < 0.2):
                    c = {"batch": rnd.randint(1, n_batches), "amount": rnd.randint(1, 50), "steps": ["mint"]
                         + ["transfer"] * rnd.randint(1, 3) + ["list", "sale", "burn"], "at": 0, "last": 0,
                         "holder": holders[rnd.randrange(n_holders)]}
                    chains.append(c)
                else:
                    c = rnd.choice(chains) if rnd.random() < 0.5 else chains[0]
                    if c["last"] >= block:  # one step per block per chain (a listing version per block)
                        c = None
                if c is not None:
                    i += 1
                    step, b, amt = c["steps"][c["at"]], c["batch"], c["amount"]
                    c["at"] += 1
                    c["last"] = block
                    holder = c["holder"]
                    if step == "mint":
                        frm, to, kind = ZERO, holder, "mint"
                        ld.add("mint_event", **base, log_index=log + 1, to_addr=to, batch_id=b, amount=amt, verification_hash=txh(b + 7))
                    elif step == "transfer":
                        frm, to, kind = holder, holders[rnd.randrange(n_holders)], "transfer"
                        c["holder"] = to
                    elif step == "list":
                        frm, to, kind = holder, MARKET, "list"
                        chain_listing += 1
                        c["listing"], c["listed_at"], c["price"] = chain_listing, block, 10**15 * rnd.randint(4, 9)
                        c["list_tx"] = tx
                    elif step == "sale":
                        frm, to, kind = MARKET, holders[rnd.randrange(n_holders)], "sale"
                        lid, price = c["listing"], c["price"]
                        ld.add("trade", **base, log_index=log + 1, listing_id=lid, buyer=to, seller=holder, batch_id=b, amount=amt,
                               price_per_unit=price, payment_ref=f"pi_{i}" if rnd.random() < 0.3 else None)
                        common = dict(chain=CHAIN, listing_id=lid, seller=holder, batch_id=b, price_per_unit=price,
                                      amount_listed=amt, created_block=c["listed_at"], created_tx=c["list_tx"])
                        ld.add("listing", **common, amount_remaining=amt, amount_sold=0, status="active",
                               valid_from=c["listed_at"], valid_to=block)
                        ld.add("listing", **common, amount_remaining=0, amount_sold=amt, status="sold_out",
                               valid_from=block, valid_to=None)
                        c["holder"] = to
                    else:
                        frm, to, kind = holder, ZERO, "burn"
                        cert += 1
                        certs.append((cert, b))
                        hops.append(len(c["steps"]))
                        ld.add("retirement", **base, log_index=log + 1, certificate_id=cert, holder=frm, batch_id=b, amount=amt,
                               beneficiary=f"Company {cert % 500}", reason="offset")
                        chains.remove(c)
                    ld.add("ledger_entry", **base, log_index=log, seq=0, batch_id=b, operator=frm if kind != "mint" else to,
                           from_addr=frm, to_addr=to, amount=amt, kind=kind)
                    if len(ld.rows.get("ledger_entry", ())) >= 50_000:
                        ld.flush()
                    continue
            i += 1
            b = rnd.randint(1, n_batches)
            r = rnd.random()
            amount = rnd.randint(1, 1000)
            if r < 0.08 or i <= n_batches:
                b = b if i > n_batches else i
                to, kind, frm = holders[rnd.randrange(n_holders)], "mint", ZERO
                ld.add("mint_event", **base, log_index=log + 1, to_addr=to, batch_id=b, amount=amount, verification_hash=txh(b + 7))
            elif r < 0.18:  # a sale on one of the batch's standing listings (their sellers' credits were escrowed at block 1)
                k = rnd.randrange(3)
                frm, to, kind = MARKET, holders[rnd.randrange(n_holders)], "sale"
                ld.add("trade", **base, log_index=log + 1, listing_id=b * 10 + k, buyer=to, seller=holders[(b + k) % n_holders],
                       batch_id=b, amount=amount, price_per_unit=10**15 * rnd.randint(4, 9),
                       payment_ref=f"pi_{i}" if rnd.random() < 0.3 else None)
            else:
                frm, to, kind = holders[rnd.randrange(n_holders)], holders[rnd.randrange(n_holders)], "transfer"
            ld.add("ledger_entry", **base, log_index=log, seq=0, batch_id=b, operator=frm if frm != ZERO else to,
                   from_addr=frm, to_addr=to, amount=amount, kind=kind)
            if len(ld.rows.get("ledger_entry", ())) >= 50_000:
                ld.flush()
        # Holdings: every holder a few batches; the whale 100, each with one closed earlier version.
        mid = blocks // 2
        for n, h in enumerate(holders):
            for b in rnd.sample(range(1, n_batches + 1), 5):
                ld.add("holding", chain=CHAIN, owner=h, batch_id=b, tradable=rnd.randint(0, 10**6), listed=0, retired=0,
                       valid_from=1, valid_to=None)
        for b in range(1, 101):
            ld.add("holding", chain=CHAIN, owner=WHALE, batch_id=b, tradable=500, listed=0, retired=0, valid_from=1, valid_to=mid)
            ld.add("holding", chain=CHAIN, owner=WHALE, batch_id=b, tradable=rnd.randint(1, 10**6), listed=rnd.randint(0, 100),
                   retired=rnd.randint(0, 50), valid_from=mid, valid_to=None)
        ld.flush()
        conn.execute("INSERT INTO indexer_cursor (chain, block_number, block_hash, finalized_number) VALUES (%s, %s, %s, %s)",
                     (CHAIN, blocks, txh(blocks), blocks - 12))
        conn.execute("INSERT INTO indexed_block (chain, number, hash, parent_hash, timestamp) VALUES (%s, %s, %s, %s, %s)",
                     (CHAIN, blocks, txh(blocks), txh(blocks - 1), ts(blocks)))
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return {"batches": n_batches, "holders": n_holders, "certs": certs, "blocks": blocks, "hops": hops}


def custody_hops(url: str, cert_ids: list[int]) -> list[int]:
    """Provenance length (hops, retirement included) of each certificate, by the API's own custody query."""
    import psycopg as pg

    async def run() -> list[int]:
        async with await pg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
            class Db:
                async def fetch(self, sql, params=None):
                    return await (await conn.execute(sql, params)).fetchall()

            rows = await certificate_provenance(Db(), [(CHAIN, c) for c in cert_ids], None)
        n: dict[int, int] = {}
        for r in rows:
            n[int(r["_cert"])] = n.get(int(r["_cert"]), 0) + 1
        return [n.get(c, 0) for c in cert_ids]

    return asyncio.run(run())


def bench_certs(info: dict) -> list[int]:
    """The certificates the bench asks for (the same 200 on every side and run)."""
    rnd = random.Random(5)
    return [c for c, _ in rnd.sample(info["certs"], min(200, len(info["certs"])))]


def hop_summary(hops: list[int]) -> str:
    return (f"hops min {min(hops)}, median {statistics.median(hops):g}, max {max(hops)}; "
            f"{sum(h >= 5 for h in hops) / len(hops):.0%} with >= 5") if hops else "none"


def cpu_s(pids: list[int]) -> float:
    """User+system CPU seconds of the server processes (load-independent cost per request)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
    return total


def cpu_by_pid(pids: list[int]) -> dict[int, float]:
    return {p: cpu_s([p]) for p in pids}


def cpu_since(before: dict[int, float], pids: list[int]) -> float:
    """CPU seconds `pids` spent since `before` was sampled (a process born since counts whole). A process that
    exited in between is left out rather than subtracted (Postgres backends come and go): never negative."""
    return sum(max(0.0, cpu_s([p]) - before.get(p, 0.0)) for p in pids)


def postgres_pids() -> list[int]:
    """Every postgres process on this host (the bench's own server when it runs locally; empty otherwise)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "comm").read_text().strip() in ("postgres", "postmaster"):
                    out.append(int(d.name))
            except OSError:
                pass
    return out


def server_pids(pid: int) -> list[int]:
    """The uvicorn process and its worker children."""
    kids = Path(f"/proc/{pid}/task/{pid}/children")
    return [pid, *(int(x) for x in kids.read_text().split())] if kids.exists() else [pid]


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] * 1000


async def drive(fn, args: list, concurrency: int, lat: list[float] | None = None) -> float:
    """Run fn(arg) for every arg with `concurrency` workers, appending each latency (s) to `lat`; the wall time."""
    lat = [] if lat is None else lat
    it = iter(args)

    async def worker() -> None:
        for a in it:
            t = time.perf_counter()
            await fn(a)
            lat.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - t0


class Side:
    """Latencies, wall time and CPU (its client, Postgres, and the API server when there is one) of one side."""

    def __init__(self, server_pid: int | None = None) -> None:
        self.server_pid, self.lat, self.wall = server_pid, [], 0.0
        self.cpu = {"server": 0.0, "client": 0.0, "pg": 0.0}

    async def run(self, fn, args: list, concurrency: int) -> None:
        c0 = cpu_s(server_pids(self.server_pid)) if self.server_pid else 0.0
        k0, p0 = time.process_time(), cpu_by_pid(postgres_pids())
        self.wall += await drive(fn, args, concurrency, self.lat)
        self.cpu["client"] += time.process_time() - k0
        self.cpu["pg"] += cpu_since(p0, postgres_pids())
        if self.server_pid:
            self.cpu["server"] += cpu_s(server_pids(self.server_pid)) - c0

    def figures(self) -> dict:
        n = len(self.lat)
        return {"p50": pct(self.lat, 50), "p99": pct(self.lat, 99), "rps": n / self.wall,
                **{f"{k}_cpu_ms": v / n * 1000 for k, v in self.cpu.items()}}


async def measure(api_url: str, db_url: str, info: dict, requests: int, concurrency: int, pid: int) -> dict[str, dict]:
    rnd = random.Random(5)
    # Certificates of a spread of batches; marketStats of batches with trades.
    cert_ids = bench_certs(info)
    rnd.sample(info["certs"], min(200, len(info["certs"])))  # keeps the batches drawn below as they were
    batches = [rnd.randint(1, info["batches"]) for _ in range(200)]
    cases = {
        "portfolio": (PORTFOLIO_Q, lambda i: {"o": WHALE}),
        "certificate": (CERT_Q, lambda i: {"id": str(cert_ids[i % len(cert_ids)])}),
        "market_stats": (STATS_Q, lambda i: {"b": str(batches[i % len(batches)])}),
    }
    pool = AsyncConnectionPool(libpq_url(db_url), min_size=concurrency, max_size=concurrency, open=False,
                               kwargs={"autocommit": True, "row_factory": dict_row, "prepare_threshold": 2,
                                       "options": "-c plan_cache_mode=force_generic_plan"})  # as the API plans
    await pool.open(wait=True)

    async def raw(name: str, i: int) -> None:
        async with pool.connection() as conn:
            if name == "portfolio":
                sql, p = portfolio_sql(None, None, WHALE)
                rows = await (await conn.execute(sql, p)).fetchall()
                assert len(rows) == 100
            elif name == "certificate":
                cid = cert_ids[i % len(cert_ids)]  # the resolver's one statement: retirement, batch, custody chain
                sql = certificate_bundle_sql("r.certificate_id = %s AND r.chain = %s", "b.valid_to IS NULL", True)
                rows = await (await conn.execute(sql, (cid, CHAIN))).fetchall()
                assert len(rows) == 1 and rows[0]["_provenance"]
            else:
                sql, p = stats_sql(CHAIN, batches[i % len(batches)], None, 86400, None)
                await (await conn.execute(sql, p)).fetchall()

    from urllib.parse import urlsplit

    from bench.common import HttpClient

    out: dict[str, dict] = {}
    where = urlsplit(api_url)
    async with HttpClient(where.hostname, where.port, concurrency) as client:
        for name, (query, variables) in cases.items():
            async def api(i: int, query=query, variables=variables) -> None:
                status, raw_body = await client.post("/graphql", orjson.dumps({"query": query, "variables": variables(i)}))
                assert status == 200 and b'"errors"' not in raw_body, raw_body[:500]
            warm = max(20, requests // 10)
            await drive(api, list(range(warm)), concurrency)
            await drive(lambda i, n=name: raw(n, i), list(range(warm)), concurrency)
            # API and SQL alternate in rounds, so both sides see the same machine (a shared box drifts by ±30%).
            a, s = Side(pid), Side()
            rounds = max(1, min(ROUNDS, requests // 50))
            for r in range(rounds):
                chunk = list(range(r * requests // rounds, (r + 1) * requests // rounds))
                await a.run(api, chunk, concurrency)
                await s.run(lambda i, n=name: raw(n, i), chunk, concurrency)
            out[name] = {"api": a.figures(), "sql": s.figures()}
    await pool.close()
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_api(url: str, workers: int, **env_extra: str) -> tuple[subprocess.Popen, str]:
    """Start the API (`carbonledger serve --workers`) on `url`'s database; (process, base URL) once it answers.
    `env_extra`: settings as environment variables (e.g. CARBONLEDGER_API_ANSWER_CACHE_MB="0")."""
    port = free_port()
    env = {**os.environ, "CARBONLEDGER_DATABASE_URL": url, "CARBONLEDGER_CONFIG": os.devnull,
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "graphql")]), **env_extra}
    env.pop("CARBONLEDGER_CHAINS", None)
    proc = subprocess.Popen([sys.executable, "-m", "carbonledger.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", str(workers)], env=env, cwd=str(ROOT))  # as an operator runs it
    api_url = f"http://127.0.0.1:{port}"
    wait_http(proc, api_url + "/health", "the API server")
    if workers > 1:
        wait_listeners(proc, port, workers, "the API server")
    return proc, api_url


def describe(url: str, info: dict, load_s: float) -> list[int]:
    """Print what was loaded and the custody-chain lengths of the certificates the bench asks for; return those."""
    print(f"loaded {info['events']:,} ledger events ({info['batches']} batches, {info['holders']} holders, "
          f"{len(info['certs'])} certificates) in {load_s:.1f} s")
    hops = custody_hops(url, bench_certs(info))
    print(f"custody chains of the {len(hops)} certificates asked for: {hop_summary(hops)}")
    return hops


@contextlib.contextmanager
def bench_database(args: argparse.Namespace, prefix: str, prepare: Any = None) -> Iterator[tuple[str, dict, float]]:
    """(url, info, seconds spent loading) of a fresh database on CARBONLEDGER_DATABASE_URL's server loaded with
    `args.events` ledger events (`prepare(url)` runs after loading), or of the one `--reuse` names; dropped at the end
    unless `--keep` or `--reuse`. bench/api.py and bench/peers.py share it."""
    import pickle

    from bench.common import stop_cleanly
    from store.migrate import upgrade

    stop_cleanly()
    server = libpq_url(os.environ.get("CARBONLEDGER_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    name = args.reuse or f"{prefix}_{uuid.uuid4().hex[:8]}"
    url = server.rsplit("/", 1)[0] + "/" + name
    info_file = Path(f"/tmp/{name}.info.pickle")
    admin = psycopg.connect(server, autocommit=True)
    t = time.perf_counter()
    try:
        if args.reuse:
            info = pickle.loads(info_file.read_bytes())
            args.events = info["events"]
        else:
            admin.execute(f'CREATE DATABASE "{name}"')
            upgrade(url)
            info = load(url, args.events, args.seed)
            info["events"] = args.events
            if prepare is not None:
                prepare(url)
            if args.keep:
                info_file.write_bytes(pickle.dumps(info))
                print(f"kept database {name} (reuse with --reuse {name})")
        yield url, info, time.perf_counter() - t
    finally:
        if not args.keep and not args.reuse:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000, help="ledger events to load (default 1,000,000)")
    ap.add_argument("--requests", type=int, default=2000, help="requests per query kind and side")
    ap.add_argument("--concurrency", type=int, default=8,
                    help="clients in flight, API and SQL side alike (default 8: 4 per core on the 2-core reference box)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="uvicorn worker processes (default: one per core)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the bench database (its name is printed)")
    ap.add_argument("--reuse", metavar="DB", help="measure an existing database kept by --keep (skips loading)")
    ap.add_argument("--answer-cache", action="store_true",
                    help="keep the API's answer cache on (default off here: this bench weighs executing a question "
                         "against its own SQL; bench/peers.py measures both)")
    args = ap.parse_args()

    proc = None
    with bench_database(args, "bench_api") as (url, info, load_s):
        hops = describe(url, info, load_s)
        try:
            proc, api_url = serve_api(url, args.workers,
                                      **({} if args.answer_cache else {"CARBONLEDGER_API_ANSWER_CACHE_MB": "0"}))
            res = asyncio.run(measure(api_url, url, info, args.requests, args.concurrency, proc.pid))
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(10)

    print(f"\n{'query':14s} {'side':4s} {'p50 ms':>8s} {'p99 ms':>8s} {'req/s':>8s}")
    kv = [f"events={args.events}", f"concurrency={args.concurrency}", f"workers={args.workers}", f"requests={args.requests}",
          f"cores={os.cpu_count()}", f"load_s={load_s:.1f}",
          f"loadavg={os.getloadavg()[0]:.1f}", f"cert_hops_median={statistics.median(hops):g}"]
    for name, r in res.items():
        for side in ("api", "sql"):
            m = r[side]
            print(f"{name:14s} {side:4s} {m['p50']:8.2f} {m['p99']:8.2f} {m['rps']:8.0f}")
        ratio = r["api"]["p50"] / r["sql"]["p50"]
        print(f"{name:14s} api/sql p50 ratio {ratio:.2f}x; CPU ms/request: API server {r['api']['server_cpu_ms']:.2f}, "
              f"its client {r['api']['client_cpu_ms']:.2f}, postgres {r['api']['pg_cpu_ms']:.2f}; "
              f"SQL side: client {r['sql']['client_cpu_ms']:.2f}, postgres {r['sql']['pg_cpu_ms']:.2f}")
        kv += [f"{name}_p50_ms={r['api']['p50']:.2f}", f"{name}_p99_ms={r['api']['p99']:.2f}", f"{name}_rps={r['api']['rps']:.0f}",
               f"{name}_server_cpu_ms={r['api']['server_cpu_ms']:.2f}",
               f"{name}_sql_p50_ms={r['sql']['p50']:.2f}", f"{name}_sql_p99_ms={r['sql']['p99']:.2f}", f"{name}_ratio={ratio:.2f}"]
    print("RESULT " + " ".join(kv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
