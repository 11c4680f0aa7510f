#!/usr/bin/env python3
"""Freshness on anvil (one block per transaction), default config (no ws_url: the indexer's paced head poll):
time from a transaction's receipt to (a) the GraphQL API reflecting it in a query and (b) a subscription message.

Starts anvil and a scratch database (on CARBONLEDGER_DATABASE_URL's server, default the local one), deploys the
protocol, runs `carbonledger index` and `carbonledger serve` as subprocesses with a config that sets only what anvil
needs (no finalized tag, a small finality depth), opens one graphql-transport-ws subscription
(`orderStatusChanged(buyer)`), then sends N `createOrder` transactions at `--rate` per second. For each one: the
receipt's arrival is t0; (a) is when a `_meta { block }` query first shows the receipt's block (polled every ms or
so), (b) when the subscription message for that order arrives. Both as p50/p95/p99/max in ms.

    python bench/latency.py --events 300 --rate 5
Last line: RESULT key=value ...
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "graphql"))

SUB = ('subscription($buyer: String) { orderStatusChanged(buyer: $buyer) { ... on OrderStatusChanged { orderId '
       'block { number } } } }')
META = b'{"query": "{ _meta(chain: \\"dev\\") { block { number } } }"}'


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else float("nan")


async def _run(api_port: int, rpc: str, escrow: str, buyer: str, seller: str, n: int, rate: float) -> dict:
    import httpx
    from eth_abi import encode
    from eth_utils import keccak

    from gqlapi.testing import WsClient

    client = await WsClient(f"ws://127.0.0.1:{api_port}/graphql").start()
    arrived: dict[int, float] = {}
    await client.subscribe("s", SUB, {"buyer": buyer})

    async def reader() -> None:
        while True:
            m = await client.next("s", timeout=3600)
            if m is None:
                return
            if "orderStatusChanged" not in m:
                raise SystemExit(f"bench: the subscription ended: {m}")
            arrived[int(m["orderStatusChanged"]["orderId"])] = time.perf_counter()

    read = asyncio.create_task(reader())
    await asyncio.sleep(0.5)  # the subscription is registered (it has no ack in graphql-transport-ws)
    selector = keccak(text="createOrder(address,uint256,bytes32)")[:4]
    sub_ms: list[float] = []
    query_ms: list[float] = []
    async with httpx.AsyncClient(timeout=10) as http:
        async def rpc_call(method: str, params: list) -> dict:
            r = await http.post(rpc, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
            return r.json()["result"]

        async def query_reflects(block: int, t0: float) -> None:
            while True:
                r = await http.post(f"http://127.0.0.1:{api_port}/graphql", content=META,
                                    headers={"content-type": "application/json"})
                if r.json()["data"]["_meta"][0]["block"]["number"] >= block:
                    query_ms.append((time.perf_counter() - t0) * 1000)
                    return
                await asyncio.sleep(0.001)

        start = time.perf_counter()
        for i in range(n):
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            data = selector + encode(["address", "uint256", "bytes32"], [seller, 1000, keccak(text=f"bench{i}")])
            tx = await rpc_call("eth_sendTransaction", [{"from": buyer, "to": escrow, "data": "0x" + data.hex()}])
            receipt = None
            while receipt is None:
                receipt = await rpc_call("eth_getTransactionReceipt", [tx])
            t0 = time.perf_counter()
            order_id = int(receipt["logs"][0]["topics"][1], 16)
            await query_reflects(int(receipt["blockNumber"], 16), t0)
            while order_id not in arrived:
                await asyncio.sleep(0.001)
                if time.perf_counter() - t0 > 30:
                    raise SystemExit(f"bench: no subscription message for order {order_id} within 30 s")
            sub_ms.append(max(0.0, (arrived[order_id] - t0) * 1000))
    await client.close()
    read.cancel()
    return {"query": query_ms, "sub": sub_ms}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=300, help="transactions (one block each)")
    ap.add_argument("--rate", type=float, default=5.0, help="transactions per second")
    args = ap.parse_args()

    from web3 import Web3

    from bench.common import scratch_database, wait_http
    from chains.evm.deploy import deploy_protocol
    from core.anvil import Anvil, free_port

    tmp = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    with scratch_database("cl_bench_latency") as db, Anvil() as anvil:
        w3 = Web3(Web3.HTTPProvider(anvil.url))
        dep = deploy_protocol(w3, w3.eth.accounts[0])
        dep.write(tmp / "deployment.json")
        api_port, idx_port = free_port(), free_port()
        cfg = tmp / "carbonledger.toml"
        cfg.write_text(f'[database]\nurl = "{db}"\n\n[chains.dev]\nrpc_url = "{anvil.url}"\n'
                       f'deployment = "{tmp / "deployment.json"}"\nuse_finalized_tag = false\nfinality_depth = 2\n\n'
                       f'[api]\nport = {api_port}\n\n[indexer]\nport = {idx_port}\n')
        env = {k: v for k, v in os.environ.items() if not k.startswith("CARBONLEDGER_")}
        cmd = [sys.executable, "-m", "carbonledger.cli", "--config", str(cfg)]
        log = open(tmp / "daemons.log", "wb")
        idx = subprocess.Popen([*cmd, "index", "--no-progress"], env=env, stdout=log, stderr=subprocess.STDOUT)
        api = subprocess.Popen([*cmd, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_http(idx, f"http://127.0.0.1:{idx_port}/ready", "the indexer")
            wait_http(api, f"http://127.0.0.1:{api_port}/ready", "the API")
            buyer, seller = w3.eth.accounts[1], w3.eth.accounts[2]
            out = asyncio.run(_run(api_port, anvil.url, dep.contracts["Escrow"].address, buyer, seller, args.events,
                                   args.rate))
        finally:
            for p in (idx, api):
                p.terminate()
            for p in (idx, api):
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
            log.close()
    load = os.getloadavg()[0]
    print(f"{args.events} transactions at {args.rate:g}/s on anvil, one block each; default config (no ws_url); "
          f"load {load:.2f}")
    res = {}
    for key, name in (("query", "receipt -> query reflects"), ("sub", "receipt -> subscription message")):
        xs = out[key]
        q = {p: pct(xs, p) for p in (50, 95, 99)}
        print(f"  {name:34s} p50 {q[50]:7.1f} ms  p95 {q[95]:7.1f}  p99 {q[99]:7.1f}  max {max(xs):7.1f} "
              f"(transaction #{xs.index(max(xs)) + 1})")
        res.update({f"{key}_p50_ms": f"{q[50]:.1f}", f"{key}_p95_ms": f"{q[95]:.1f}", f"{key}_p99_ms": f"{q[99]:.1f}",
                    f"{key}_max_ms": f"{max(xs):.1f}"})
    print("RESULT " + " ".join(f"{k}={v}" for k, v in {"events": args.events, "rate": args.rate, **res,
                                                       "load": f"{load:.2f}"}.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
