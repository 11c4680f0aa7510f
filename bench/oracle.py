#!/usr/bin/env python3
"""Oracle throughput and latency on anvil: N signed Stripe webhooks -> confirmed `settleOffchain` writes.

Starts anvil and localstripe, a scratch database (on CARBONLEDGER_DATABASE_URL's server, default the local one),
deploys the protocol and indexes it, makes N PaymentIntents on localstripe, runs `carbonledger oracle run` as a
subprocess and posts their N webhooks over `--concurrency` keep-alive connections (the oracle re-fetches each
PaymentIntent from localstripe).
Reports confirmed writes/s (first webhook sent -> last intent confirmed), webhook->broadcast latency p50/p99
(from the outbox's own timestamps: intent committed -> first broadcast) and the webhook HTTP round trip p50. Then
the sender alone: N more intents put in the outbox while no oracle runs, the oracle started, confirmed writes/s from
its first broadcast. Each is compared with the chain's own limit for the same writes from the same key (pre-signed,
`chain_limit`), measured at the same chain position just before (and undone: anvil slows as its chain grows).
While the webhooks are sent it also reports the CPU each process used per payment (oracle, anvil, localstripe, this
client, Postgres) and how busy the whole machine was: on 2 cores, latency at 100 payments/s follows that figure.

    python bench/oracle.py --events 2000
Last line: RESULT key=value ...
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1000, help="payments (webhooks) to send")
    ap.add_argument("--concurrency", type=int, default=16, help="webhooks in flight at most (keep-alive connections)")
    ap.add_argument("--in-flight", type=int, default=128, help="oracle.max_in_flight")
    ap.add_argument("--rate", type=float, default=0.0,
                    help="open-loop webhooks/s (0: as fast as possible; latency then includes the queue)")
    args = ap.parse_args()

    import psycopg

    from bench.common import HttpClient, scratch_database
    from core.anvil import Anvil, free_port
    from indexer.testing import index_once
    from oracle.testing import LocalStripe, OracleProcess, deploy_world, payment_event, signed, write_config

    tmp = Path(tempfile.mkdtemp(prefix="bench-oracle-"))
    with scratch_database("cl_bench_oracle") as db:
        with Anvil() as anvil, LocalStripe() as stripe_api, ExitStack() as stack:
            world = deploy_world(anvil.url, listing_amount=10 * args.events)
            index_once(anvil.url, world.deployment, db)  # every payment is checked against the indexed listing
            world.deployment.write(tmp / "deployment.json")
            port = free_port()
            cfg = write_config(tmp / "oracle.toml", rpc_url=anvil.url, deployment_file=tmp / "deployment.json", db_url=db,
                               port=port, extra=f"max_in_flight = {args.in_flight}\nreconcile_interval_s = 3600.0\n"
                               'webhook_rate_limit = ""',  # one client floods on purpose
                               stripe_url=stripe_api.url)
            # max_in_flight is set twice (write_config's default, then ours): keep the last one
            text = cfg.read_text().replace("max_in_flight = 64\n", "", 1)
            cfg.write_text(text)
            # anvil slows as its chain grows (measured: 1,500 such writes on a fresh chain 1,505/s, then 228/s, then
            # 128/s), so each oracle phase is compared with the chain's limit measured at the same chain position:
            # measured first, then undone (evm_snapshot / evm_revert), before the oracle's phase runs.
            limit = undone(anvil.url, lambda: chain_limit(anvil.url, world, args.events, args.in_flight))
            proc = stack.enter_context(OracleProcess(cfg, port, tmp / "oracle.log").start())  # stopped however we end
            meta = {"listing_id": str(world.listing_id), "buyer": world.w3.eth.accounts[3], "amount": "1"}
            with ThreadPoolExecutor(4) as ex:  # real PaymentIntents (localstripe): the oracle re-fetches each one
                pis = list(ex.map(lambda _: stripe_api.payment_intent(meta)["id"], range(args.events)))
            bodies = [signed(payment_event(pi, meta)) for pi in pis]
            rtt: list[float] = []

            async def post_all() -> tuple[float, float]:
                """Every webhook over `concurrency` keep-alive connections (bench/common.HttpClient, a few tens of µs
                of CPU per request: with httpx from threads the bench's client used ~2 ms of CPU per payment, on the
                2 cores the oracle runs on). At most `concurrency` in flight, each waiting for its turn as the old
                threads did: open loop at --rate (webhook n leaves at t0 + n / rate), or each as soon as a slot is
                free; a webhook's round trip is timed from when it leaves. (t0, when the last answer came)."""
                slots = asyncio.Semaphore(args.concurrency)
                async with HttpClient("127.0.0.1", port, args.concurrency) as http:
                    t0 = time.perf_counter()

                    async def post(n: int, body: bytes, headers: dict[str, str]) -> None:
                        async with slots:
                            if args.rate > 0:
                                await asyncio.sleep(max(0.0, t0 + n / args.rate - time.perf_counter()))
                            t = time.perf_counter()
                            try:
                                status, answer = await asyncio.wait_for(
                                    http.post("/webhooks/stripe", body, headers=headers), 30)
                            except asyncio.TimeoutError:
                                raise SystemExit(f"webhook {n}: no answer in 30 s; see {tmp / 'oracle.log'}") from None
                            if status != 200:
                                raise SystemExit(f"webhook {n} answered {status}: {answer[:200]!r}")
                            rtt.append(time.perf_counter() - t)

                    await asyncio.gather(*(post(n, b, h) for n, (b, h) in enumerate(bodies)))
                    return t0, time.perf_counter()

            # Steady state: /ready answers once webhooks can be taken, while the sender's process may still be
            # starting, and webhooks sent meanwhile would queue behind its start-up. (The lease is held 0.03-0.04 s
            # after /ready on a quiet box; one CI run's p50 of 162 ms, pick-up 124 ms, against 14.5 ms in the run
            # before, is what made us look; whether start-up caused it is not known.)
            t_ready = time.monotonic()
            proc.wait_ready(timeout=120, sender=True)
            print(f"the sender held the nonce lease {time.monotonic() - t_ready:.2f} s after the oracle answered /ready")
            kids = oracle_pids(proc.proc.pid)[1:]  # the sender's process (and multiprocessing's resource tracker)
            who = {"oracle webhooks": [proc.proc.pid], "oracle sender": kids, "anvil": [anvil.proc.pid],
                   "localstripe": [stripe_api.proc.pid], "bench client": [os.getpid()]}
            cpu0, box0 = cpu_by(who), box_cpu()
            t0, t_last = asyncio.run(post_all())
            t_sent = t_last - t0
            cpu1, box1 = cpu_by(who), box_cpu()
            with psycopg.connect(db) as c:
                while c.execute("SELECT count(*) FROM oracle_intent WHERE status = 'confirmed'").fetchone()[0] < args.events:
                    time.sleep(0.05)
                t_done = time.perf_counter() - t0
                lat = [r[0] for r in c.execute(
                    "SELECT extract(epoch FROM broadcast_at - created_at) FROM oracle_intent").fetchall()]
                # Where the time goes, from the rows' own clocks (now() is each transaction's start): the payment's
                # decision transaction began -> the sender's fill transaction began (decision, commit, NOTIFY, wake-up);
                # then -> the broadcast was recorded (pre-checks, signing, the durable commit, the send; anvil mines
                # inside eth_sendRawTransaction).
                phases = c.execute(
                    "SELECT extract(epoch FROM a.created_at - i.created_at), extract(epoch FROM i.broadcast_at - a.created_at)"
                    " FROM oracle_intent i JOIN LATERAL (SELECT created_at FROM oracle_attempt WHERE intent_id = i.id"
                    " ORDER BY id LIMIT 1) a ON TRUE").fetchall()
                attempts = c.execute("SELECT count(*) FROM oracle_attempt").fetchone()[0]
                spread = c.execute("SELECT extract(epoch FROM max(confirmed_at) - min(created_at)) FROM oracle_intent").fetchone()[0]
            proc.terminate()
            limit_sender = undone(anvil.url, lambda: chain_limit(anvil.url, world, args.events, args.in_flight))
            sender = sender_from_full_queue(cfg, port, tmp, db, world, args.events)
            sold = world.w3.eth.get_logs({"address": world.address("Marketplace"), "fromBlock": 0, "toBlock": "latest"})
            lat = [float(x) * 1000 for x in lat]
            to_fill, to_send = [float(p[0]) * 1000 for p in phases], [float(p[1]) * 1000 for p in phases]
            print(f"webhook->broadcast p50 {pct(lat, 50):.1f} ms: intent decided and picked up p50 {pct(to_fill, 50):.1f} ms, "
                  f"then pre-checked, signed, persisted and sent p50 {pct(to_send, 50):.1f} ms")
            busy = 1 - (box1[1] - box0[1]) / max(box1[0] - box0[0], 1)
            oracle_cpu = sum(cpu1[k] - cpu0[k] for k in ("oracle webhooks", "oracle sender")) / args.events * 1000
            print("CPU while the webhooks were sent, per payment: " + ", ".join(
                f"{k} {(cpu1[k] - cpu0[k]) / args.events * 1000:.2f} ms" for k in cpu0) + f"; the box {busy:.0%} busy")
            print(f"webhooks sent in {t_sent:.2f}s; all confirmed after {t_done:.2f}s; {attempts} attempts; "
                  f"{len(sold)} Marketplace logs (incl. Listed)")
            ours = args.events / t_done
            print(f"chain limit: {args.events} pre-signed settleOffchain writes from the oracle's key, sent in batches of "
                  f"10, at most {args.in_flight} unconfirmed, and confirmed at {limit:.1f}/s; the oracle reached {ours:.1f}/s ({ours / limit:.2f} of it)")
            print(f"sender from a full queue: {args.events} intents already in the outbox (inserted as the webhook "
                  f"path inserts them), confirmed at {sender:.1f}/s from the first broadcast ({sender / limit_sender:.2f} of "
                  f"the chain limit at that chain position, {limit_sender:.1f}/s)")
            print(f"RESULT events={args.events} rate={args.rate:g} confirmed_per_s={ours:.1f} "
                  f"chain_limit_per_s={limit:.1f} ratio_to_chain_limit={ours / limit:.3f} "
                  f"sender_confirmed_per_s={sender:.1f} sender_chain_limit_per_s={limit_sender:.1f} "
                  f"sender_ratio_to_chain_limit={sender / limit_sender:.3f} "
                  f"outbox_confirmed_per_s={args.events / float(spread):.1f} webhook_to_broadcast_p50_ms={pct(lat, 50):.1f} "
                  f"webhook_to_broadcast_p99_ms={pct(lat, 99):.1f} pickup_p50_ms={pct(to_fill, 50):.1f} "
                  f"send_p50_ms={pct(to_send, 50):.1f} webhook_rtt_p50_ms={pct(rtt, 50) * 1000:.1f} "
                  f"webhook_rtt_p99_ms={pct(rtt, 99) * 1000:.1f} ingress_per_s={args.events / t_sent:.1f} "
                  f"oracle_cpu_ms_per_payment={oracle_cpu:.2f} "
                  f"oracle_sender_cpu_ms_per_payment={(cpu1['oracle sender'] - cpu0['oracle sender']) / args.events * 1000:.2f} "
                  f"box_busy={busy:.2f}")
    return 0


def oracle_pids(pid: int) -> list[int]:
    """The oracle process and its children (the sender runs in one: oracle.sender_process; multiprocessing's resource
    tracker), once the sender is up. A sender started again later would be missed (none is, unless one dies)."""
    import psutil

    deadline = time.monotonic() + 30
    while True:
        kids = psutil.Process(pid).children(recursive=True)
        if any("spawn_main" in " ".join(k.cmdline()) for k in kids) or time.monotonic() > deadline:
            return [pid, *(k.pid for k in kids)]
        time.sleep(0.05)


def cpu_by(who: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds (user + system) used so far by each named group of processes, with Postgres's server processes
    as one more group (found by name in /proc)."""
    tick = os.sysconf("SC_CLK_TCK")

    def used(pid: int) -> float:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            return 0.0  # gone, or not ours to read

    out = {k: sum(used(p) for p in pids) for k, pids in who.items()}
    pg = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/comm") as f:
                    if f.read().strip() == "postgres":
                        pg.append(int(d))
            except OSError:
                pass
    out["postgres"] = sum(used(p) for p in pg)
    return out


def box_cpu() -> tuple[int, int]:
    """(all ticks, idle ticks) of the whole machine so far (/proc/stat)."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    return sum(ticks), ticks[3] + ticks[4]


def undone(url: str, measure: Any) -> Any:
    """`measure()` on the chain as it is, then the chain put back as it was (anvil's evm_snapshot / evm_revert)."""
    from chains.evm.rpc import RpcClient

    rpc = RpcClient(url, timeout_s=60, retries=1)
    snap = rpc.call("evm_snapshot", [])
    try:
        return measure()
    finally:
        assert rpc.call("evm_revert", [snap]) is True, "anvil did not revert to its snapshot"


def sender_from_full_queue(cfg: Path, port: int, tmp: Path, db: str, world: object, n: int) -> float:
    """The sender alone: n settleOffchain intents put in the outbox by `oracle.outbox.insert_intent` (what the
    webhook path calls once a payment is decided) while no oracle runs, then the oracle started and timed from its
    first broadcast to its last confirmation (confirmed writes/s). This separates the sender's rate from the webhook
    path's, which re-fetches every PaymentIntent from localstripe on the same 2 cores."""
    import psycopg

    from oracle.outbox import Intent, insert_intent
    from oracle.testing import OracleProcess

    buyer = world.w3.eth.accounts[3]  # type: ignore[attr-defined]
    with psycopg.connect(db) as c, c.cursor() as cur:
        chain = cur.execute("SELECT chain FROM oracle_intent LIMIT 1").fetchone()[0]  # the first phase's chain
        for i in range(n):
            insert_intent(cur, chain, Intent(f"bench-sender-{i}", "stripe", "Marketplace", "settleOffchain",
                                             [str(world.listing_id), buyer, "1", f"pi_bench_sender_{i}"]))  # type: ignore[attr-defined]
    with OracleProcess(cfg, port, tmp / "oracle-sender.log").start():
        with psycopg.connect(db, autocommit=True) as c:
            q = "FROM oracle_intent WHERE idempotency_key LIKE 'bench-sender-%%'"
            while c.execute(f"SELECT count(*) {q} AND status = 'confirmed'").fetchone()[0] < n:
                failed = c.execute(f"SELECT count(*) {q} AND status = 'failed'").fetchone()[0]
                if failed:
                    raise SystemExit(f"{failed} sender intents failed; see {tmp / 'oracle-sender.log'}")
                time.sleep(0.05)
            spread = c.execute(f"SELECT extract(epoch FROM max(confirmed_at) - min(broadcast_at)) {q}").fetchone()[0]
    return n / float(spread)


def chain_limit(url: str, world: object, n: int, window: int) -> float:
    """The chain's own limit for the oracle's writes, on the same anvil at the chain position of the oracle phase it is
    compared with (`undone` puts the chain back afterwards): the same
    call (Marketplace.settleOffchain, one credit, a fresh payment reference each) from the same key, signed before
    the clock starts, broadcast as fast as the node takes them (JSON-RPC batches of 10) with at most `window`
    unconfirmed at a time (the oracle's max_in_flight: anvil slows down, to 37/s at 1,500, and grew to 23 GB and was
    OOM-killed once, when all of them wait in its pool at once) and timed until the last is mined (confirmed
    writes/s). Nothing checks, persists or re-fetches anything here:
    what the oracle adds over this is its price for exactly-once."""
    from chains.base import TxRequest
    from chains.evm.rpc import RpcClient
    from chains.evm.writer import EvmWriter
    from core.secrets import PrivateKey
    from oracle.testing import ORACLE_KEY

    contracts = {name: c.address for name, c in world.deployment.contracts.items()}  # type: ignore[attr-defined]
    writer = EvmWriter("bench", RpcClient(url, timeout_s=60, retries=1), 31337, PrivateKey(ORACLE_KEY), contracts)
    buyer = world.w3.eth.accounts[3]  # type: ignore[attr-defined]
    me = writer.address()
    start = int(writer.rpc.call("eth_getTransactionCount", [me, "pending"]), 16)
    reqs = [TxRequest("bench", "Marketplace", "settleOffchain", (world.listing_id, buyer, 1, f"chain-limit-{start}-{i}"))  # type: ignore[attr-defined]
            for i in range(n)]
    (gas, err), = writer.estimate_many(reqs[:1])
    assert err is None, err
    fees = writer.fees()
    raws = [writer.sign(r, start + i, {"gas": int(gas * 1.2) + 10_000, "max_fee": fees.max_fee * 4,
                                       "priority_fee": fees.priority_fee})[1] for i, r in enumerate(reqs)]
    t0 = time.perf_counter()
    sent, mined = 0, 0
    while mined < n:
        if sent < n and sent - mined < window:  # keep at most `window` unconfirmed, as the oracle's sender does
            batch = raws[sent:min(n, mined + window, sent + 10)]
            bad = [x for x in writer.broadcast_many(batch) if not isinstance(x, str)]
            assert not bad, bad[:3]
            sent += len(batch)
            continue
        mined = int(writer.rpc.call("eth_getTransactionCount", [me, "latest"]), 16) - start
        if sent - mined >= window or sent == n:
            time.sleep(0.002)
    return n / (time.perf_counter() - t0)


if __name__ == "__main__":
    sys.exit(main())
