#!/usr/bin/env python3
"""The GraphQL API against PostGraphile 4 (npm `postgraphile`), same database, same questions, same run.

Loads bench/api.py's data (indexer-shaped rows; every certificate ends a custody chain of 5+ hops) into a scratch
database, adds a schema of its own, `peer`, holding what a PostGraphile user would write for our three queries
(views with smart-comment relations, and functions whose bodies are the API's own SQL: gqlapi.resolvers'
portfolio, provenance and marketStats queries, in plpgsql so Postgres caches their plans per connection as it
does for the API's prepared statements), then serves the API (uvicorn, --workers processes) and PostGraphile
(Node 20, `--cluster-workers` the same number, production mode, plain lists) side by side.

It first asks both for every question it will time and fails loudly unless the answers are identical once shapes
are normalised (GraphQL aliases give both the same field names; numbers compare as decimal strings, addresses in
lower case, enums in lower case). Then, at each --concurrency (default 8 and 32 clients), per query, it warms both
(every question once on every client connection, so each server process has seen each: the API keeps an answer
cache per worker; then a pass as timed) and times them in alternating rounds (a shared box drifts by ±30%), with
the same keep-alive clients (bench/common.HttpClient), and prints req/s, p50, p99 per side and the ratio API/PostGraphile of req/s. Last
line: RESULT key=value ... with every figure, the machine's cores and its load average.

The questions repeat (the same whale, 200 certificates, 200 batches), as a frontend's do, so the API as configured
answers most of them from its answer cache (gqlapi.answers; exact: keyed by the database state read per request).
A third side, the API with that cache off (`--no-cold` skips it), executes every request: what a question never
asked before costs; its ratios are printed too (`*_cold_ratio`).

    # quick (CI-sized, well under 2 minutes)
    .venv/bin/python bench/peers.py --quick
    # full size
    .venv/bin/python bench/peers.py --events 1000000 --requests 3000

Needs `npm install` (postgraphile is a devDependency in package.json) and Node ≥ 18 on PATH.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "graphql")]

import orjson  # noqa: E402
import psycopg  # noqa: E402

from bench.api import (CERT_Q, CHAIN, PORTFOLIO_Q, STATS_Q, WHALE, Side, bench_certs, bench_database, describe,  # noqa: E402
                       drive, free_port, serve_api)
from gqlapi.resolvers.market import stats_sql  # noqa: E402
from gqlapi.resolvers.portfolio import portfolio_sql  # noqa: E402
from gqlapi.resolvers.provenance_sql import certificate_provenance  # noqa: E402

ROUNDS = 6
POSTGRAPHILE = ROOT / "node_modules" / "postgraphile" / "cli.js"

# The same questions in PostGraphile's schema; aliases give the answers our field names.
PEER_PORTFOLIO_Q = """query($o: String!) { portfolio: portfolioInfo(owner: $o) { totals { balance value retired } }
  holdings: portfolioList(owner: $o) { batchId tradable listed retired lastPrice value
    batch: batchByChainAndBatchId { projectId vintage methodology registry serialNumber } } }"""
PEER_CERT_Q = """query($id: BigFloat!) { certificate(id: $id, chain: "bench") { id holder beneficiary amount txHash blockNumber time
  batch: batchByChainAndBatchId { projectId vintage }
  provenance: provenanceList { kind txHash blockNumber logIndex timestamp fromAddress toAddress amount paymentRef verificationHash } } }"""
PEER_STATS_Q = """query($b: BigFloat!) { marketStats(batchId: $b, chain: "bench", windowS: 86400) { volume tradeCount vwap lastPrice
  high low change floor openListings } }"""

_ISO = """to_char(to_timestamp({ts}) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')"""


def _pg_params(sql: str, names: list[str]) -> str:
    """psycopg's positional %s -> the plpgsql expressions `names`, in order."""
    it = iter(names)
    out = re.sub(r"%s", lambda _: next(it), sql)
    assert next(it, None) is None, "parameter count mismatch"
    return out


def peer_schema() -> str:
    """DDL of schema `peer`: PostGraphile's view of the same data, its bodies the API's own SQL."""
    port_sql, port_params = portfolio_sql(None, None, "OWNER")
    assert port_params == ["OWNER"]
    holdings = _pg_params(port_sql, ["$1"])
    prov_sql, _ = _provenance_sql()
    stats, _ = stats_sql(CHAIN, 1, None, 86400, None)
    stats = stats.replace("%(chain)s", "$2").replace("%(batch)s", "$1").replace("%(window)s", "$3")
    assert "%(" not in stats
    return f"""
CREATE SCHEMA peer;
CREATE VIEW peer.batches AS SELECT chain, batch_id, project_id, vintage, methodology, registry, serial_number
  FROM public.credit_batch WHERE valid_to IS NULL;
COMMENT ON VIEW peer.batches IS E'@primaryKey chain,batch_id';

CREATE TYPE peer.holding AS (chain text, batch_id numeric, tradable numeric, listed numeric, retired numeric,
  last_price numeric, value numeric);
COMMENT ON TYPE peer.holding IS E'@foreignKey (chain, batch_id) references peer.batches (chain, batch_id)';
CREATE FUNCTION peer.portfolio(owner text) RETURNS SETOF peer.holding LANGUAGE plpgsql STABLE AS $f$
BEGIN
  RETURN QUERY SELECT x.chain::text, x.batch_id::numeric, x.tradable::numeric, x.listed::numeric, x.retired::numeric,
    x.last_price::numeric, (x.tradable::numeric + x.listed::numeric) * x.last_price::numeric
  FROM ({holdings}) x;
END $f$;
CREATE TYPE peer.totals AS (balance numeric, value numeric, retired numeric);
CREATE TYPE peer.portfolio_info AS (owner text);
CREATE FUNCTION peer.portfolio_info(owner text) RETURNS peer.portfolio_info LANGUAGE sql STABLE AS
  $f$ SELECT ROW($1)::peer.portfolio_info $f$;
CREATE FUNCTION peer.portfolio_info_totals(p peer.portfolio_info) RETURNS peer.totals LANGUAGE sql STABLE AS $f$
  SELECT COALESCE(sum(h.tradable + h.listed), 0), COALESCE(sum(h.value), 0), COALESCE(sum(h.retired), 0)
  FROM peer.portfolio(p.owner) h $f$;

CREATE VIEW peer.certificates AS SELECT r.chain, r.certificate_id AS id, r.holder, r.beneficiary, r.amount, r.batch_id,
  r.tx_hash, r.block_number, r.log_index, r.block_timestamp AS timestamp, {_ISO.format(ts="r.block_timestamp")} AS time
  FROM public.retirement r WHERE r.chain = ANY(ARRAY(SELECT chain FROM public.indexer_cursor));
COMMENT ON VIEW peer.certificates IS E'@foreignKey (chain, batch_id) references peer.batches (chain, batch_id)';
CREATE FUNCTION peer.certificate(id numeric, chain text) RETURNS peer.certificates LANGUAGE sql STABLE AS
  $f$ SELECT * FROM peer.certificates c WHERE c.id = $1 AND c.chain = $2 $f$;
CREATE TYPE peer.custody_event AS (kind text, tx_hash text, block_number bigint, log_index integer, timestamp bigint,
  from_address text, to_address text, amount numeric, payment_ref text, verification_hash text);
CREATE FUNCTION peer.certificates_provenance(c peer.certificates) RETURNS SETOF peer.custody_event LANGUAGE plpgsql STABLE AS $f$
BEGIN
  RETURN QUERY SELECT x.kind::text, x.tx_hash::text, x.block_number::bigint, x.log_index::integer,
    x.block_timestamp::bigint, x.from_addr::text, x.to_addr::text, x.amount::numeric, x.payment_ref::text,
    x.verification_hash::text
  FROM ({prov_sql}) x ORDER BY x.ord, x.block_number, x.log_index, x.seq;
END $f$;

CREATE TYPE peer.market_stats AS (volume numeric, trade_count bigint, vwap numeric, last_price numeric, high numeric,
  low numeric, change numeric, floor numeric, open_listings bigint);
CREATE FUNCTION peer.market_stats(batch_id numeric, chain text, window_s integer) RETURNS peer.market_stats
  LANGUAGE plpgsql STABLE AS $f$
#variable_conflict use_column
DECLARE r peer.market_stats;
BEGIN
  SELECT COALESCE(s.volume, 0)::numeric, s.trade_count::bigint,
    CASE WHEN s.volume > 0 THEN div(s.quote_volume, s.volume) END::numeric, s.last_price::numeric, s.high::numeric,
    s.low::numeric, (s.last_price - COALESCE(s.prev_price, s.open))::numeric, s.floor::numeric,
    COALESCE(s.open_listings, 0)::bigint
  INTO r FROM ({stats}) s;
  RETURN r;
END $f$;
"""


def _provenance_sql() -> tuple[str, list]:
    """The API's certificate-provenance query for one certificate, parameters as plpgsql expressions."""
    captured: dict = {}

    class Capture:
        async def fetch(self, sql, params=None):
            captured["sql"], captured["params"] = sql, params
            return []

    asyncio.run(certificate_provenance(Capture(), [("CHAIN", 0)], None))
    assert captured["params"][:2] == [["CHAIN"], [0]]
    sql = _pg_params(captured["sql"], ["ARRAY[c.chain]::text", "ARRAY[c.id]::numeric", "9223372036854775807"])
    return sql.replace("ARRAY[c.chain]::text::text[]", "ARRAY[c.chain]::text[]").replace(
        "ARRAY[c.id]::numeric::numeric[]", "ARRAY[c.id]::numeric[]"), []


def normalise(v: object, key: str = "") -> object:
    """Shapes compared, not spellings: numbers as decimal strings, 0x-hex and enums in lower case."""
    if isinstance(v, dict):
        return {k: normalise(x, k) for k, x in v.items()}
    if isinstance(v, list):
        return [normalise(x) for x in v]
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, (int, float)):
        return str(int(v))
    if isinstance(v, str) and (v.startswith("0x") or key == "kind"):
        return v.lower()
    return v


def reshape_peer(name: str, data: dict) -> dict:
    """PostGraphile's answer in our document's shape (two root fields -> one object)."""
    if name == "portfolio":
        return {"portfolio": {"totals": data["portfolio"]["totals"], "holdings": data["holdings"]}}
    return data


def peer_versions() -> dict[str, str]:
    node = shutil.which("node")
    out = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout.strip() if node else "none"
    pkg = POSTGRAPHILE.parent / "package.json"
    return {"node": out, "postgraphile": orjson.loads(pkg.read_bytes())["version"] if pkg.exists() else "none"}


def serve_peer(url: str, workers: int) -> tuple[subprocess.Popen, str]:
    node = shutil.which("node")
    if node is None or not POSTGRAPHILE.exists():
        raise SystemExit("PostGraphile is not installed: run `npm install` (Node >= 18 on PATH)")
    versions = peer_versions()
    print(f"PostGraphile {versions['postgraphile']} on Node {versions['node']}")
    port = free_port()
    cmd = [node, str(POSTGRAPHILE), "--connection", url, "--schema", "peer", "--host", "127.0.0.1", "--port", str(port),
           "--simple-collections", "only", "--disable-query-log", "--disable-default-mutations",
           "--no-setof-functions-contain-nulls", "--legacy-relations", "omit", "--max-pool-size", "10"]
    if workers > 1:
        cmd += ["--cluster-workers", str(workers)]
    proc = subprocess.Popen(cmd, env={**os.environ, "NODE_ENV": "production"}, cwd=str(ROOT),
                            stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    # PostGraphile has no health route; a GET of /graphql answers 405 once it listens, a POST answers the query.
    deadline = time.monotonic() + 90
    import httpx

    while True:
        try:
            r = httpx.post(base + "/graphql", json={"query": "{ __typename }"}, timeout=2)
            if r.status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.terminate()
            raise SystemExit("PostGraphile did not start")
        time.sleep(0.3)
    return proc, base


def proc_tree(pid: int) -> list[int]:
    """A process and all its descendants (uvicorn or Node cluster workers)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in Path(f"/proc/{p}/task").iterdir():
                todo += [int(x) for x in (t / "children").read_text().split()]
        except OSError:
            pass
    return out


class TreeSide(Side):
    """bench.api.Side counting the CPU of a whole process tree."""

    async def run(self, fn, args, concurrency):
        from bench.api import cpu_by_pid, cpu_since, cpu_s, postgres_pids

        c0 = cpu_s(proc_tree(self.server_pid))
        k0, p0 = time.process_time(), cpu_by_pid(postgres_pids())
        self.wall += await drive(fn, args, concurrency, self.lat)
        self.cpu["client"] += time.process_time() - k0
        self.cpu["pg"] += cpu_since(p0, postgres_pids())
        self.cpu["server"] += cpu_s(proc_tree(self.server_pid)) - c0


async def measure(api: tuple[str, int], peer: tuple[str, int], info: dict, requests: int,
                  levels: list[int], cold: tuple[str, int] | None = None) -> dict:
    """Figures per (query, clients) for each side: `api` (as configured), `peer`, and `cold` when given (the API
    with its answer cache off: every request executed, what a question never asked before costs)."""
    from urllib.parse import urlsplit

    from bench.common import HttpClient

    import random

    rnd = random.Random(5)
    certs = bench_certs(info)
    batches = [rnd.randint(1, info["batches"]) for _ in range(200)]
    cases = {
        "portfolio": ((PORTFOLIO_Q, PEER_PORTFOLIO_Q), lambda i: {"o": WHALE}),
        "certificate": ((CERT_Q, PEER_CERT_Q), lambda i: {"id": str(certs[i % len(certs)])}),
        "market_stats": ((STATS_Q, PEER_STATS_Q), lambda i: {"b": str(batches[i % len(batches)])}),
    }
    distinct = {"portfolio": 1, "certificate": len(certs), "market_stats": len(batches)}  # questions each asks

    async def ask(client, q: str, variables: dict) -> dict:
        status, body = await client.post("/graphql", orjson.dumps({"query": q, "variables": variables}))
        doc = orjson.loads(body)
        if status != 200 or doc.get("errors"):
            raise SystemExit(f"error answer ({status}): {body[:600]!r}")
        return doc["data"]

    out: dict = {}
    a_where, p_where = urlsplit(api[0]), urlsplit(peer[0])
    c_where = urlsplit(cold[0]) if cold is not None else None
    # Identical answers first, for every question the timing asks.
    async with HttpClient(a_where.hostname, a_where.port, 1) as ac, HttpClient(p_where.hostname, p_where.port, 1) as pc:
        checked = 0
        for name, ((ours, theirs), variables) in cases.items():
            for i in range(distinct[name]):
                v = variables(i)
                a = normalise(await ask(ac, ours, v))
                b = normalise(reshape_peer(name, await ask(pc, theirs, v)))
                if a != b:
                    raise SystemExit(f"DIFFERENT ANSWERS for {name} {v}:\n ours: {orjson.dumps(a)[:1500]!r}\n "
                                     f"PostGraphile: {orjson.dumps(b)[:1500]!r}")
                if c_where is not None:
                    async with HttpClient(c_where.hostname, c_where.port, 1) as cc:
                        if normalise(await ask(cc, ours, v)) != a:
                            raise SystemExit(f"DIFFERENT ANSWERS for {name} {v} with the answer cache off")
                checked += 1
        print(f"answers identical: {checked} questions asked of both")
    for conc in levels:
        async with HttpClient(a_where.hostname, a_where.port, conc) as ac, HttpClient(p_where.hostname, p_where.port, conc) as pc, \
                HttpClient(*(c_where.hostname, c_where.port) if c_where else (a_where.hostname, a_where.port), conc) as cc:
            for name, ((ours, theirs), variables) in cases.items():
                def caller(client, q):
                    async def call(i: int) -> None:
                        status, body = await client.post("/graphql", orjson.dumps({"query": q, "variables": variables(i)}))
                        assert status == 200 and b'"errors"' not in body, body[:500]
                    return call

                api_call, peer_call, cold_call = caller(ac, ours), caller(pc, theirs), caller(cc, ours)
                sides = [("api", TreeSide(api[1]), api_call), ("peer", TreeSide(peer[1]), peer_call)]
                clients = [(ac, ours), (pc, theirs)]
                if cold is not None:
                    sides.append(("cold", TreeSide(cold[1]), cold_call))
                    clients.append((cc, ours))
                # Warm-up: every distinct question once on every connection of each side, so every server process
                # has seen each (the API keeps an answer cache per worker, and connections land on workers by
                # address hash: a warm-up of random questions left some worker cold for some questions), then
                # a pass as timed.
                for client, q in clients:
                    for i in range(distinct[name]):
                        for status, body in await client.post_each(
                                "/graphql", orjson.dumps({"query": q, "variables": variables(i)})):
                            assert status == 200 and b'"errors"' not in body, body[:500]
                warm = max(50, requests // 5)
                for _, _, call in sides:
                    await drive(call, list(range(warm)), conc)
                rounds = max(2, min(ROUNDS, requests // 100))
                for r in range(rounds):
                    chunk = list(range(r * requests // rounds, (r + 1) * requests // rounds))
                    for _, side, call in sides[r % len(sides):] + sides[:r % len(sides)]:  # each side goes first in turn
                        await side.run(call, chunk, conc)
                out[(name, conc)] = {key: side.figures() for key, side, _ in sides}
                out[(name, conc)]["load"] = os.getloadavg()[0]
                fa, fp = out[(name, conc)]["api"], out[(name, conc)]["peer"]
                print(f"  measured {name} at {conc} clients: api {fa['rps']:.0f} req/s, PostGraphile {fp['rps']:.0f} req/s "
                      f"(load {os.getloadavg()[0]:.1f})", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000, help="ledger events to load (default 1,000,000)")
    ap.add_argument("--requests", type=int, default=3000, help="timed requests per query, side and concurrency")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[8, 32], help="client counts (default 8 32)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="API worker processes and PostGraphile cluster workers (default: one per core)")
    ap.add_argument("--quick", action="store_true", help="CI size: 20,000 events, 400 requests")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the bench database (its name is printed)")
    ap.add_argument("--reuse", metavar="DB", help="measure an existing database kept by --keep (skips loading)")
    ap.add_argument("--no-cold", action="store_true", help="skip the third side: the API with its answer cache off "
                    "(api.answer_cache_mb = 0), every request executed")
    args = ap.parse_args()
    if args.quick:
        args.events, args.requests = 20_000, 400

    def peer(url: str) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(peer_schema())

    procs: list[subprocess.Popen] = []
    with bench_database(args, "bench_peers", peer) as (url, info, load_s):
        hops = describe(url, info, load_s)
        try:
            api_proc, api_url = serve_api(url, args.workers)
            procs.append(api_proc)
            peer_proc, peer_url = serve_peer(url, args.workers)
            procs.append(peer_proc)
            cold = None
            if not args.no_cold:
                cold_proc, cold_url = serve_api(url, args.workers, CARBONLEDGER_API_ANSWER_CACHE_MB="0")
                procs.append(cold_proc)
                cold = (cold_url, cold_proc.pid)
            res = asyncio.run(measure((api_url, api_proc.pid), (peer_url, peer_proc.pid), info, args.requests,
                                      args.concurrency, cold))
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)

    print(f"\n{'query':13s} {'clients':>7s} {'side':12s} {'req/s':>7s} {'p50 ms':>7s} {'p99 ms':>7s} {'srv CPU ms/req':>14s} "
          f"{'pg CPU ms/req':>13s}")
    kv = [f"events={args.events}", f"requests={args.requests}", f"workers={args.workers}", f"cores={os.cpu_count()}",
          f"cert_hops_median={sorted(hops)[len(hops) // 2] if hops else 0}",
          "peer=postgraphile-{postgraphile} node={node}".format(**peer_versions())]
    worst = worst_cold = None
    for (q, conc), r in res.items():
        for side, label in (("api", "carbonledger"), ("peer", "PostGraphile"), ("cold", "  cache off")):
            if side not in r:
                continue
            m = r[side]
            print(f"{q:13s} {conc:7d} {label:12s} {m['rps']:7.0f} {m['p50']:7.2f} {m['p99']:7.2f} {m['server_cpu_ms']:14.2f} "
                  f"{m['pg_cpu_ms']:13.2f}")
        ratio = r["api"]["rps"] / r["peer"]["rps"]
        worst = ratio if worst is None else min(worst, ratio)
        print(f"{q:13s} {conc:7d} ratio req/s carbonledger/PostGraphile {ratio:.2f}x (load average {r['load']:.1f})")
        tag = f"{q}_c{conc}"
        kv += [f"{tag}_rps={r['api']['rps']:.0f}", f"{tag}_peer_rps={r['peer']['rps']:.0f}", f"{tag}_ratio={ratio:.2f}",
               f"{tag}_p50_ms={r['api']['p50']:.2f}", f"{tag}_p99_ms={r['api']['p99']:.2f}",
               f"{tag}_peer_p50_ms={r['peer']['p50']:.2f}", f"{tag}_peer_p99_ms={r['peer']['p99']:.2f}"]
        if "cold" in r:
            cold_ratio = r["cold"]["rps"] / r["peer"]["rps"]
            worst_cold = cold_ratio if worst_cold is None else min(worst_cold, cold_ratio)
            print(f"{q:13s} {conc:7d} ratio req/s with the answer cache off {cold_ratio:.2f}x (every request executed)")
            kv += [f"{tag}_cold_rps={r['cold']['rps']:.0f}", f"{tag}_cold_ratio={cold_ratio:.2f}",
                   f"{tag}_cold_p99_ms={r['cold']['p99']:.2f}"]
    kv += [f"min_ratio={worst:.2f}"] + ([f"min_cold_ratio={worst_cold:.2f}"] if worst_cold is not None else [])
    kv += [f"loadavg={os.getloadavg()[0]:.1f}"]
    print("RESULT " + " ".join(kv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
