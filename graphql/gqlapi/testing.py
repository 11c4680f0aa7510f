"""A small ledger simulator that writes rows the way the indexer does, for API tests and the benchmark; the API
in-process (`ApiClient`) or served (`Served`); crafted documents (`doubling`).

Each action is mined in its own block (unless inside `with world.block():`), so tests can time-travel to the
block before or after any action. Versioned rows follow store.base.Versioned: an update at block B closes the
current row (valid_to = B) and opens a new one (valid_from = B); two updates in one block rewrite that block's row.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
from collections.abc import Iterator
from typing import Any

import psycopg

ZERO = "0x" + "0" * 40
MARKET = "0x" + "ab" * 20
T0 = 1_700_000_000


def h(*parts: object) -> str:
    """A deterministic 32-byte hex hash of `parts`."""
    return "0x" + hashlib.sha256(repr(parts).encode()).hexdigest()


def addr(n: int) -> str:
    """The n-th test address (lowercase)."""
    return "0x" + f"{n:040x}"


_VKEYS = {"credit_batch": ("batch_id",), "holding": ("owner", "batch_id"), "listing": ("listing_id",),
          "escrow_order": ("order_id",)}


def doubling(n: int, leaf: str = "_meta { chain }", spread: str = "...F# ...F#", head: str = "query") -> str:
    """A fragment bomb (the admission issue's document): F1 spreads F2 twice, F2 spreads F3 twice, ..., so 2^n
    fields once expanded; `#` in `spread` stands for the next fragment's number, `head` opens the operation."""
    body = " ".join(f"fragment F{i} on Query {{ {spread.replace('#', str(i + 1))} }}" for i in range(1, n))
    return f"{head} {{ ...F1 }} {body} fragment F{n} on Query {{ {leaf} }}"


class World:
    """Writes indexer-shaped rows for one chain into the database at `url`."""

    def __init__(self, url: str, chain: str = "devnet") -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.chain = chain
        self.number = 0
        self._log = itertools.count()
        self._in_block = False
        self._state: dict[tuple, dict[str, Any]] = {}
        self._listing_ids = itertools.count(1)
        self._cert_ids = itertools.count(1)
        self._tx = itertools.count()
        self.block_hashes: dict[int, str] = {}

    # ------------------------------------------------------------------ blocks
    def _mine(self) -> None:
        self.number += 1
        self._log = itertools.count()
        bh = h(self.chain, "block", self.number, len(self.block_hashes))
        parent = self.block_hashes.get(self.number - 1, "0x" + "0" * 64)
        self.block_hashes[self.number] = bh
        self.conn.execute("INSERT INTO indexed_block (chain, number, hash, parent_hash, timestamp) VALUES (%s,%s,%s,%s,%s) "
                          "ON CONFLICT (chain, number) DO UPDATE SET hash = EXCLUDED.hash, timestamp = EXCLUDED.timestamp",
                          (self.chain, self.number, bh, parent, self.ts))
        self.conn.execute("INSERT INTO indexer_cursor (chain, block_number, block_hash, finalized_number) VALUES (%s,%s,%s,%s) "
                          "ON CONFLICT (chain) DO UPDATE SET block_number = EXCLUDED.block_number, block_hash = EXCLUDED.block_hash, "
                          "finalized_number = EXCLUDED.finalized_number", (self.chain, self.number, bh, max(0, self.number - 2)))

    @property
    def ts(self) -> int:
        return T0 + 12 * self.number

    @contextlib.contextmanager
    def block(self) -> Iterator[int]:
        """Put several actions into one block."""
        self._mine()
        self._in_block = True
        try:
            yield self.number
        finally:
            self._in_block = False

    def _begin(self) -> None:
        if not self._in_block:
            self._mine()

    def _event(self, table: str, tx: str, **cols: Any) -> int:
        li = next(self._log)
        cols = {"chain": self.chain, "tx_hash": tx, "log_index": li, "block_number": self.number,
                "block_hash": self.block_hashes[self.number], "block_timestamp": self.ts, **cols}
        names = ", ".join(cols)
        self.conn.execute(f"INSERT INTO {table} ({names}) VALUES ({', '.join(['%s'] * len(cols))})", list(cols.values()))
        return li

    def _newtx(self) -> str:
        return h(self.chain, "tx", next(self._tx))

    def _set(self, table: str, key: dict[str, Any], **values: Any) -> None:
        sk = (table, *key.values())
        cur = self._state.get(sk)
        row = {**(cur or {}), **key, **values}
        where = " AND ".join(f"{k} = %s" for k in key)
        if cur is not None and cur["valid_from"] == self.number:
            sets = ", ".join(f"{k} = %s" for k in values)
            self.conn.execute(f"UPDATE {table} SET {sets} WHERE chain = %s AND {where} AND valid_from = %s",
                              [*values.values(), self.chain, *key.values(), self.number])
        else:
            if cur is not None:
                self.conn.execute(f"UPDATE {table} SET valid_to = %s WHERE chain = %s AND {where} AND valid_to IS NULL",
                                  [self.number, self.chain, *key.values()])
            row.update(chain=self.chain, valid_from=self.number, valid_to=None)
            cols = ", ".join(row)
            self.conn.execute(f"INSERT INTO {table} ({cols}) VALUES ({', '.join(['%s'] * len(row))})", list(row.values()))
        self._state[sk] = row

    def _get(self, table: str, *key: Any) -> dict[str, Any]:
        return self._state[(table, *key)]

    def _hold(self, owner: str, batch: int, **delta: int) -> None:
        cur = self._state.get(("holding", owner, batch)) or {"tradable": 0, "listed": 0, "retired": 0}
        self._set("holding", {"owner": owner, "batch_id": batch},
                  **{k: cur[k] + delta.get(k, 0) for k in ("tradable", "listed", "retired")})

    def _ledger(self, tx: str, batch: int, frm: str, to: str, amount: int, kind: str) -> None:
        self._event("ledger_entry", tx, seq=0, batch_id=batch, operator=frm if frm != ZERO else to,
                    from_addr=frm, to_addr=to, amount=amount, kind=kind)

    # ------------------------------------------------------------------ credits
    def create_batch(self, batch: int, project: str = "PRJ-1", vintage: int = 2024, methodology: str = "VM0042",
                     registry: str = "Verra", serial: str | None = None) -> None:
        self._begin()
        tx = self._newtx()
        self._set("credit_batch", {"batch_id": batch}, project_id=project, vintage=vintage, methodology=methodology,
                  registry=registry, serial_number=serial or f"SN-{batch}", metadata_hash=h("meta", batch),
                  created_block=self.number, created_tx=tx, total_minted=0, total_retired=0)

    def mint(self, to: str, batch: int, amount: int, verification: str | None = None) -> str:
        self._begin()
        tx = self._newtx()
        self._ledger(tx, batch, ZERO, to, amount, "mint")
        self._event("mint_event", tx, to_addr=to, batch_id=batch, amount=amount, verification_hash=verification or h("verif", batch, tx))
        b = self._get("credit_batch", batch)
        self._set("credit_batch", {"batch_id": batch}, total_minted=b["total_minted"] + amount)
        self._hold(to, batch, tradable=amount)
        return tx

    def transfer(self, frm: str, to: str, batch: int, amount: int) -> str:
        self._begin()
        tx = self._newtx()
        self._ledger(tx, batch, frm, to, amount, "transfer")
        self._hold(frm, batch, tradable=-amount)
        self._hold(to, batch, tradable=amount)
        return tx

    def list(self, seller: str, batch: int, amount: int, price: int) -> int:
        self._begin()
        tx = self._newtx()
        lid = next(self._listing_ids)
        self._ledger(tx, batch, seller, MARKET, amount, "list")
        self._set("listing", {"listing_id": lid}, seller=seller, batch_id=batch, price_per_unit=price, amount_listed=amount,
                  amount_remaining=amount, amount_sold=0, status="active", created_block=self.number, created_tx=tx)
        self._hold(seller, batch, tradable=-amount, listed=amount)
        return lid

    def buy(self, buyer: str, listing: int, amount: int, payment_ref: str | None = None) -> str:
        self._begin()
        tx = self._newtx()
        lst = self._get("listing", listing)
        batch, seller = lst["batch_id"], lst["seller"]
        self._ledger(tx, batch, MARKET, buyer, amount, "sale")
        self._event("trade", tx, listing_id=listing, buyer=buyer, seller=seller, batch_id=batch, amount=amount,
                    price_per_unit=lst["price_per_unit"], payment_ref=payment_ref)
        if payment_ref:
            self._event("offchain_payment", tx, payment_ref=payment_ref, contract="Marketplace", target_id=listing)
        left = lst["amount_remaining"] - amount
        self._set("listing", {"listing_id": listing}, amount_remaining=left, amount_sold=lst["amount_sold"] + amount,
                  status="active" if left else "sold_out")
        self._hold(seller, batch, listed=-amount)
        self._hold(buyer, batch, tradable=amount)
        return tx

    def cancel(self, listing: int) -> str:
        self._begin()
        tx = self._newtx()
        lst = self._get("listing", listing)
        self._ledger(tx, lst["batch_id"], MARKET, lst["seller"], lst["amount_remaining"], "unlist")
        self._hold(lst["seller"], lst["batch_id"], listed=-lst["amount_remaining"], tradable=lst["amount_remaining"])
        self._set("listing", {"listing_id": listing}, amount_remaining=0, status="cancelled")
        return tx

    def retire(self, holder: str, batch: int, amount: int, beneficiary: str = "ACME Corp", reason: str = "offset 2025") -> int:
        self._begin()
        tx = self._newtx()
        cid = next(self._cert_ids)
        self._ledger(tx, batch, holder, ZERO, amount, "burn")
        self._event("retirement", tx, certificate_id=cid, holder=holder, batch_id=batch, amount=amount,
                    beneficiary=beneficiary, reason=reason)
        b = self._get("credit_batch", batch)
        self._set("credit_batch", {"batch_id": batch}, total_retired=b["total_retired"] + amount)
        self._hold(holder, batch, tradable=-amount, retired=amount)
        return cid

    # ------------------------------------------------------------------ escrow, QR, IoT
    def order(self, order_id: int, event: str, actor: str, **kw: Any) -> str:
        """An escrow event; 'created' needs buyer, seller, amount."""
        self._begin()
        tx = self._newtx()
        ref = kw.pop("payment_ref", None)
        self._event("order_event", tx, order_id=order_id, event=event, actor=actor, payment_ref=ref,
                    data=psycopg.types.json.Jsonb(kw.get("data", {})))
        if event == "created":
            self._set("escrow_order", {"order_id": order_id}, buyer=kw["buyer"], seller=kw["seller"], amount=kw["amount"],
                      metadata_hash=h("order", order_id), status="created", funded_offchain=False, payment_ref=None,
                      tracking_hash=None, refunded_buyer=None, created_block=self.number, created_tx=tx)
        else:
            extra: dict[str, Any] = {"status": event}
            if ref:
                extra.update(funded_offchain=True, payment_ref=ref)
            self._set("escrow_order", {"order_id": order_id}, **extra)
        return tx

    def qr_pay(self, order_hash: str, payer: str, amount: int) -> str:
        self._begin()
        tx = self._newtx()
        self._event("qr_payment", tx, order_hash=order_hash, payer=payer, amount=amount)
        return tx

    def qr_settle(self, order_data_hash: str, beneficiary: str, amount: int) -> str:
        self._begin()
        tx = self._newtx()
        self._event("qr_settlement", tx, order_data_hash=order_data_hash, beneficiary=beneficiary, amount=amount)
        return tx

    def anchor(self, anchor_id: int, root: str, leaves: int, start: int, end: int, quality: int) -> str:
        self._begin()
        tx = self._newtx()
        self._event("iot_anchor", tx, anchor_id=anchor_id, root=root, leaf_count=leaves, window_start=start,
                    window_end=end, quality_score=quality)
        return tx

    # ------------------------------------------------------------------ reorgs
    def reorg(self, ancestor: int) -> None:
        """Undo everything above `ancestor` the way the indexer does (store.base docs)."""
        from store.models import EVENT_TABLES, VERSIONED_TABLES

        with self.conn.transaction():
            for t in EVENT_TABLES:
                self.conn.execute(f"DELETE FROM {t.__tablename__} WHERE chain = %s AND block_number > %s", (self.chain, ancestor))
            for t in VERSIONED_TABLES:
                n = t.__tablename__
                self.conn.execute(f"DELETE FROM {n} WHERE chain = %s AND valid_from > %s", (self.chain, ancestor))
                self.conn.execute(f"UPDATE {n} SET valid_to = NULL WHERE chain = %s AND valid_to > %s", (self.chain, ancestor))
            self.conn.execute("DELETE FROM indexed_block WHERE chain = %s AND number > %s", (self.chain, ancestor))
        for n in range(ancestor + 1, self.number + 1):
            self.block_hashes.pop(n, None)
        self.number = ancestor
        self.conn.execute("UPDATE indexer_cursor SET block_number = %s, block_hash = %s, updated_at = clock_timestamp() "
                          "WHERE chain = %s", (ancestor, self.block_hashes.get(ancestor, "0x" + "0" * 64), self.chain))
        self._reload()

    def _reload(self) -> None:
        from psycopg.rows import dict_row

        self._state.clear()
        with self.conn.cursor(row_factory=dict_row) as cur:
            for table, keys in _VKEYS.items():
                for r in cur.execute(f"SELECT * FROM {table} WHERE chain = %s AND valid_to IS NULL", (self.chain,)):
                    r = {k: (int(v) if type(v).__name__ == "Decimal" else v) for k, v in r.items()}
                    self._state[(table, *(r[k] for k in keys))] = r
        self._tx = itertools.count(10_000 * (self.number + 1))

    def close(self) -> None:
        self.conn.close()


# ApiClients not closed yet, held here so that a test that forgets one cannot leave it to the garbage collector:
# its loop's pending tasks would then be destroyed at a random later moment, logging from a finalizer (once in the
# middle of pytest compiling a failure report, which crashed the run). tests/conftest.py closes what a test left.
OPEN_CLIENTS: set[ApiClient] = set()


class ApiClient:
    """The real ASGI app driven in-process by httpx (no sockets), with a private event loop for sync tests
    (background tasks, such as the replica monitor, run while the loop does). `api`: ApiSettings fields, plus
    statement_timeout_ms, read_url, replica_max_lag_s and replica_check_s of DatabaseSettings."""

    def __init__(self, url: str, **api: Any) -> None:
        import httpx

        from core.config import ApiSettings, DatabaseSettings, Settings
        from gqlapi.app import create_app

        timeout = api.pop("statement_timeout_ms", 5000)
        db = {k: api.pop(k) for k in ("read_url", "replica_max_lag_s", "replica_check_s") if k in api}
        settings = Settings(api=ApiSettings(**api), database=DatabaseSettings(url=url, statement_timeout_ms=timeout, **db))
        self.app = create_app(settings, url, pool_size=4)
        self.db = self.app.state.db
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self.db.open())
        OPEN_CLIENTS.add(self)
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://api")

    def post(self, query: str, variables: dict | None = None, **kw: Any) -> Any:
        """POST /graphql; returns the httpx response."""
        body = {"query": query, "variables": variables or {}, **kw}
        return self.loop.run_until_complete(self.http.post("/graphql", json=body))

    def get(self, path: str, **kw: Any) -> Any:
        return self.loop.run_until_complete(self.http.get(path, **kw))

    def q(self, query: str, variables: dict | None = None) -> dict:
        """Run a query that must succeed; return its data."""
        r = self.post(query, variables)
        assert r.status_code == 200, r.text
        body = r.json()
        assert not body.get("errors"), body["errors"]
        return body["data"]

    def errors(self, query: str, variables: dict | None = None) -> list[str]:
        """Run a query that must fail cleanly (HTTP 200 or 400, never 500); return its error messages."""
        r = self.post(query, variables)
        assert r.status_code in (200, 400), (r.status_code, r.text)
        body = r.json()
        assert body.get("errors"), body
        return [e["message"] for e in body["errors"]]

    def close(self) -> None:
        OPEN_CLIENTS.discard(self)
        self.loop.run_until_complete(self.http.aclose())
        self.loop.run_until_complete(self.db.close())
        # as asyncio.run ends: a task still pending (a pool's last wake-up) is cancelled and awaited, not destroyed
        # with the loop ("Task was destroyed but it is pending", logged whenever the garbage collector gets to it)
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()
        if pending:
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()


class Served:
    """`carbonledger serve` in a subprocess on a free port (a real uvicorn event loop, for tests about what one
    request does to the others); `args` adds flags (`--workers 2`), `env` settings such as CARBONLEDGER_API_MAX_DEPTH."""

    def __init__(self, url: str, *args: str, **env: str) -> None:
        import os
        import socket
        import subprocess
        import sys
        import tempfile

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        full = {k: v for k, v in os.environ.items() if not k.startswith("CARBONLEDGER_")}
        full.update(CARBONLEDGER_DATABASE_URL=url, CARBONLEDGER_CONFIG=os.devnull, **env)
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([sys.executable, "-m", "carbonledger.cli", "serve", "--port", str(port), *args],
                                     env=full, stdout=self.log, stderr=subprocess.STDOUT)
        self.base = f"http://127.0.0.1:{port}"

    def wait_ready(self, timeout: float = 60) -> "Served":
        import time

        import httpx

        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(self.base + "/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            assert self.proc.poll() is None, self.output()
            assert time.monotonic() < deadline, "the API did not become ready"
            time.sleep(0.1)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def close(self) -> None:
        self.proc.kill()  # a test may have left it stuck on purpose (that is what it tests); nothing to flush
        self.proc.wait(timeout=10)
        self.log.close()


class LiveServer:
    """The API app under a real uvicorn on a free port, in a thread of this process (tests reach into
    `app.state.hub`); `api` sets ApiSettings such as live_queue, and read_url, replica_max_lag_s, replica_check_s."""

    def __init__(self, url: str, **api: Any) -> None:
        import socket
        import threading
        import time

        import uvicorn

        from core.config import ApiSettings, DatabaseSettings, Settings
        from gqlapi.app import create_app
        from core.wire import OneWriteHttpToolsProtocol

        db = {k: api.pop(k) for k in ("read_url", "replica_max_lag_s", "replica_check_s") if k in api}
        settings = Settings(api=ApiSettings(**api), database=DatabaseSettings(url=url, **db))
        self.app = create_app(settings, url, pool_size=4)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    log_config=None, ws_max_size=settings.api.live_max_message_bytes,
                                                    http=OneWriteHttpToolsProtocol))  # as `carbonledger serve`
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not (self.server.started and self.app.state.hub.connected.is_set()):
            assert self.thread.is_alive() and time.monotonic() < deadline, "the live API did not start"
            time.sleep(0.02)
        self.ws_url = f"ws://127.0.0.1:{self.port}/graphql"
        self.base = f"http://127.0.0.1:{self.port}"

    @property
    def hub(self) -> Any:
        return self.app.state.hub

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


class WsClient:
    """A graphql-transport-ws client (the `websockets` library): `await c.start()`, `await c.subscribe(id, q, v)`,
    then `await c.next(id)` per message; `closed` holds (code, reason) once the server closed the socket."""

    def __init__(self, url: str, params: dict | None = None) -> None:
        self.url, self.params = url, params or {}
        self.ws: Any = None
        self.inbox: dict[str, Any] = {}
        self.closed: tuple[int, str] | None = None
        self._reader: Any = None

    async def start(self) -> "WsClient":
        import orjson
        from websockets.asyncio.client import connect

        self.ws = await connect(self.url, subprotocols=["graphql-transport-ws"], open_timeout=30)
        await self.ws.send(orjson.dumps({"type": "connection_init", "payload": self.params}).decode())
        ack = orjson.loads(await asyncio.wait_for(self.ws.recv(), 30))
        assert ack["type"] == "connection_ack", ack
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        import orjson
        from websockets.exceptions import ConnectionClosed

        try:
            async for raw in self.ws:
                assert isinstance(raw, str), "graphql-transport-ws messages are text frames"
                m = orjson.loads(raw)
                if m["type"] == "ping":
                    await self.ws.send('{"type": "pong"}')
                    continue
                self.inbox.setdefault(m.get("id"), asyncio.Queue()).put_nowait(m)
        except ConnectionClosed:
            pass
        rcvd = self.ws.protocol.close_rcvd
        self.closed = (rcvd.code, rcvd.reason) if rcvd is not None else (1006, "")
        for q in self.inbox.values():
            q.put_nowait(None)

    async def subscribe(self, id: str, query: str, variables: dict | None = None) -> None:
        import orjson

        self.inbox.setdefault(id, asyncio.Queue())
        await self.ws.send(orjson.dumps({"id": id, "type": "subscribe",
                                         "payload": {"query": query, "variables": variables or {}}}).decode())

    async def next(self, id: str, timeout: float = 30) -> Any:
        """The next message of operation `id` (its payload's data, or the whole message if not `next`); None once
        the socket closed."""

        q = self.inbox.setdefault(id, asyncio.Queue())
        m = await asyncio.wait_for(q.get(), timeout)
        if m is None:
            q.put_nowait(None)
            return None
        if m["type"] == "next" and not m["payload"].get("errors"):
            return m["payload"]["data"]
        return m

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await self._reader
