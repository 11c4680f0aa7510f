"""Shared bench plumbing: a migrated scratch database on CARBONLEDGER_DATABASE_URL's server."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def server_url() -> str:
    """The Postgres server the benches use (CARBONLEDGER_DATABASE_URL, default the local one), as a libpq URL."""
    from store.engine import libpq_url

    return libpq_url(os.environ.get("CARBONLEDGER_DATABASE_URL", DEFAULT_SERVER))


def stop_cleanly() -> None:
    """SIGTERM (and SIGHUP) end a bench like Ctrl-C does: as SystemExit, so its `with` blocks stop anvil, localstripe,
    the servers under test and drop the scratch database. Python's default for SIGTERM is to die at once, which left
    an oracle, anvil and localstripe running and the database behind."""
    import signal
    import sys

    def stop(signum: int, _frame: Any) -> None:
        sys.exit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)


@contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    """Create `<prefix>_<random>` on the bench server, migrate it, yield its URL; drop it (FORCE) afterwards."""
    import psycopg

    from store.migrate import upgrade

    stop_cleanly()
    base = server_url()
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect(base, autocommit=True)
    try:
        admin.execute(f'CREATE DATABASE "{name}"')
        url = base.rsplit("/", 1)[0] + "/" + name
        try:
            upgrade(url)
            yield url
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()


class HttpClient:
    """Keep-alive HTTP/1.1 POSTs over asyncio protocols, responses parsed by httptools (uvicorn's parser).

    Written for the benches because aiohttp and httpx spend 0.4-0.8 ms of CPU per request: on a 2-core box that
    also runs the server under test and Postgres, the load generator's CPU would be counted against the server.
    This one costs a few tens of µs (wrk-like). One connection per concurrent request.

    A server may close a keep-alive connection that sat idle (uvicorn after 5 s, PostGraphile's Node after 5 s),
    possibly while our next request is already on the wire. A request that got no byte of response on such a
    connection is sent once more on a fresh connection, as browsers and HTTP libraries do; an error after response
    bytes arrived, or on the fresh connection too, is raised."""

    def __init__(self, host: str, port: int, size: int) -> None:
        self.host, self.port, self.size = host, port, size
        self._ready = None
        self.reconnects = 0  # connections replaced because the server had closed them

    async def _connect(self) -> "_HttpConnection":
        import asyncio

        loop = asyncio.get_running_loop()
        _, proto = await loop.create_connection(lambda: _HttpConnection(loop), self.host, self.port)
        return proto

    async def __aenter__(self) -> "HttpClient":
        import asyncio

        self._ready = asyncio.Queue()
        for _ in range(self.size):
            self._ready.put_nowait(await self._connect())
        return self

    async def __aexit__(self, *exc: object) -> None:
        while not self._ready.empty():
            self._ready.get_nowait().transport.close()

    async def post(self, path: str, body: bytes, content_type: bytes = b"application/json",
                   headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """(status, body) of one POST; `headers`: more request headers (a Content-Type among them replaces
        `content_type`; Host and Content-Length are the client's own)."""
        extra = b""
        for k, v in (headers or {}).items():
            if k.lower() == "content-type":
                content_type = v.encode()
            elif k.lower() not in ("host", "content-length"):
                extra += b"%s: %s\r\n" % (k.encode(), v.encode())
        raw = (b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n"
               % (path.encode(), self.host.encode(), content_type, len(body), extra) + body)
        conn = await self._ready.get()
        try:
            if conn.closed:  # closed by the server while it waited here
                conn = await self._replace(conn)
            try:
                return await conn.request(raw)
            except ConnectionError:
                if conn.answered:  # part of a response arrived: not a stale connection, a real failure
                    raise
                conn = await self._replace(conn)
                return await conn.request(raw)
        finally:
            self._ready.put_nowait(conn)

    async def post_each(self, path: str, body: bytes, content_type: bytes = b"application/json",
                        headers: dict[str, str] | None = None) -> list[tuple[int, bytes]]:
        """The same POST on every connection of the pool at once (call it while no other request is in flight: then
        each of the pool's connections carries one): a warm-up that reaches every server process the connections
        landed on (`carbonledger serve --workers N` keeps an answer cache per worker, and the kernel spreads
        connections over the workers by address hash)."""
        import asyncio

        return list(await asyncio.gather(*(self.post(path, body, content_type, headers) for _ in range(self.size))))

    async def _replace(self, conn: "_HttpConnection") -> "_HttpConnection":
        conn.transport.close()
        self.reconnects += 1
        return await self._connect()


class _HttpConnection:
    def __init__(self, loop) -> None:
        import httptools

        self.loop, self.transport, self.waiter, self.chunks = loop, None, None, []
        self.closed = False
        self.answered = False  # response bytes arrived for the request in flight
        self.parser = httptools.HttpResponseParser(self)

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.answered = True
        self.parser.feed_data(data)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("the server closed the connection"))

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        waiter, self.waiter = self.waiter, None
        body, self.chunks = b"".join(self.chunks), []
        if waiter is not None and not waiter.done():
            waiter.set_result((self.parser.get_status_code(), body))

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        if self.closed:
            raise ConnectionError("the server closed the connection")
        self.waiter = self.loop.create_future()
        self.answered = False
        self.transport.write(raw)
        return await self.waiter


def wait_http(proc: Any, url: str, what: str, timeout: float = 60) -> None:
    """Wait until `url` answers 200 (generous deadline: the machine is shared); fail, stopping `proc`, if it exits
    or the deadline passes."""
    import time

    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.terminate()
            raise SystemExit(f"{what} did not start")
        time.sleep(0.2)


def listeners(port: int) -> int:
    """Listening TCP sockets on `port` (Linux /proc/net/tcp*): `carbonledger serve --workers N` has one per worker."""
    n = 0
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    local, state = line.split()[1], line.split()[3]
                    n += state == "0A" and int(local.rsplit(":", 1)[1], 16) == port
        except FileNotFoundError:
            pass
    return n


def wait_listeners(proc: Any, port: int, count: int, what: str, timeout: float = 60) -> None:
    """Wait until `count` sockets listen on `port`: every worker is serving, so the clients' keep-alive connections,
    opened next, spread over all of them rather than over the first one up."""
    import time

    deadline = time.monotonic() + timeout
    while listeners(port) < count:
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.terminate()
            raise SystemExit(f"{what}: {listeners(port)} of {count} workers listening")
        time.sleep(0.1)
