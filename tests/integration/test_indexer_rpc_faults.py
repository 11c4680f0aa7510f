"""RPC faults: a proxy in front of anvil injects 429s, 500s, timeouts, truncated bodies and "too many results";
the indexer retries or shrinks its ranges and ends with exactly the canonical data, nothing skipped or doubled."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import orjson
import pytest
from web3 import Web3

from indexer.runner import run_once
from tests import seeds
from tests.integration.scenario import deploy, dump, ground_truth, indexed_state, run_scenario, settings_for

pytestmark = pytest.mark.anvil


class FaultyProxy:
    """Forwards JSON-RPC to `upstream`; each request fails with probability `rate` in a random way."""

    def __init__(self, upstream: str, rate: float = 0.25, seed: int = 1, max_log_range: int = 20,
                 mangle_logs=None) -> None:
        self.upstream, self.rate, self.rng = upstream, rate, seeds.rng(seed)
        self.mangle_logs = mangle_logs  # called with each eth_getLogs result list; may corrupt it in place
        self.max_log_range = max_log_range
        self.faults: dict[str, int] = {}
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                proxy.handle(self, body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def count(self, kind: str) -> None:
        with self.lock:
            self.faults[kind] = self.faults.get(kind, 0) + 1

    def _send(self, h, status: int, body: bytes, length: int | None = None) -> None:
        h.send_response(status)
        h.send_header("content-type", "application/json")
        h.send_header("content-length", str(len(body) if length is None else length))
        h.end_headers()
        h.wfile.write(body)

    def handle(self, h, body: bytes) -> None:
        req = orjson.loads(body)
        with self.lock:
            roll, kind = self.rng.random(), self.rng.choice(["429", "500", "timeout", "truncated", "cut"])
        if isinstance(req, dict) and req.get("method") == "eth_getLogs":
            p = req["params"][0]
            if "fromBlock" in p and int(p["toBlock"], 16) - int(p["fromBlock"], 16) + 1 > self.max_log_range:
                self.count("too_many")
                return self._send(h, 200, orjson.dumps({"jsonrpc": "2.0", "id": req["id"], "error": {
                    "code": -32005, "message": f"query returned more than 10000 results"}}))
        if roll < self.rate:
            self.count(kind)
            if kind == "429":
                return self._send(h, 429, b'{"error":"rate limited"}')
            if kind == "500":
                return self._send(h, 500, b"internal error")
            if kind == "timeout":
                time.sleep(0.8)
                return self._send(h, 504, b"")
        resp = httpx.post(self.upstream, content=body, headers={"content-type": "application/json"}, timeout=30).content
        if self.mangle_logs is not None and isinstance(req, dict) and req.get("method") == "eth_getLogs":
            answer = orjson.loads(resp)
            with self.lock:
                self.mangle_logs(answer.get("result") or [])
            resp = orjson.dumps(answer)
        if roll < self.rate and kind == "truncated":
            return self._send(h, 200, resp[: len(resp) // 2])
        if roll < self.rate and kind == "cut":  # promises more bytes than it sends, then closes
            h.close_connection = True
            return self._send(h, 200, resp[: len(resp) // 2], length=len(resp))
        self._send(h, 200, resp)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_faulty_rpc_loses_and_doubles_nothing(anvil, db_url, pg_factory):
    w3 = Web3(Web3.HTTPProvider(anvil.url))
    dep = deploy(w3)
    run_scenario(w3, dep, actions=120, seed=13)
    with FaultyProxy(anvil.url, rate=0.25, seed=5) as proxy:
        settings = settings_for(proxy.url, dep, db_url, max_block_range=64, request_timeout_s=0.4, retries=10)
        assert run_once(settings, db_url=db_url, timeout_s=240) == 0
        run_scenario(w3, dep, actions=30, seed=14)  # and again in follow mode
        assert run_once(settings, db_url=db_url, timeout_s=240) == 0
    assert {"429", "500", "timeout", "truncated", "cut", "too_many"} <= set(proxy.faults), proxy.faults
    assert indexed_state(db_url, "dev") == ground_truth(w3, dep)
    ref = pg_factory.fresh()
    try:
        assert run_once(settings_for(anvil.url, dep, ref), db_url=ref) == 0
        assert dump(db_url) == dump(ref)
    finally:
        pg_factory.drop(ref)


def test_malformed_logs_from_the_node_become_indexing_errors(anvil, db_url):
    """A node answering logs with null or malformed fields (block hash, log index, block number, topic0, an address
    topic with high bytes set, a topic longer than 32 bytes) must not stop the sync: each is recorded as an
    indexing error naming what was wrong, and the rest is indexed."""
    import psycopg

    from store.engine import libpq_url

    w3 = Web3(Web3.HTTPProvider(anvil.url))
    dep = deploy(w3)
    run_scenario(w3, dep, actions=40, seed=31)
    cc = dep.contracts["CarbonCredit"].address.lower()
    corruptions = [("blockHash", None), ("logIndex", None), ("blockNumber", None), ("topics", [None]),
                   ("topic3", "0x" + "ff" * 12 + "cc" * 20), ("topic3", "0x" + "00" * 33)]
    done: dict[tuple, str] = {}
    transfer_single = "0x" + Web3.keccak(text="TransferSingle(address,address,address,uint256,uint256)").hex().removeprefix("0x")
    lock = threading.Lock()  # the proxy answers the indexer's fetch threads concurrently

    def mangle(logs):
        with lock:
            _mangle(logs)

    def _mangle(logs):
        for log in logs:
            key = (log.get("transactionHash"), log.get("logIndex"))
            if key in done or log["address"].lower() != cc or len(log["topics"]) != 4 or len(done) >= len(corruptions):
                continue
            field, value = corruptions[len(done)]
            if field == "topic3" and log["topics"][0] != transfer_single:
                continue  # topic3 must be an address (TransferSingle's `to`), not a Retired's batch id
            done[key] = field
            if field == "topic3":
                log["topics"][3] = value
            else:
                log[field] = value

    with FaultyProxy(anvil.url, rate=0.0, mangle_logs=mangle) as proxy:
        assert run_once(settings_for(proxy.url, dep, db_url), db_url=db_url, timeout_s=240) == 0
    assert len(done) == len(corruptions)
    with psycopg.connect(libpq_url(db_url)) as conn:
        errors = [r[0] for r in conn.execute("SELECT message FROM indexing_error").fetchall()]
        cursor = conn.execute("SELECT block_number FROM indexer_cursor").fetchone()[0]
    assert cursor == w3.eth.block_number
    assert len(errors) >= len(corruptions), errors
    for word in ("blockHash", "logIndex", "blockNumber", "topic0", "high bytes", "32 bytes"):
        assert any(word in e for e in errors), (word, errors)
