"""Shared bench plumbing: a migrated scratch database on CARBONLEDGER_DATABASE_URL's server."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def server_url() -> str:
    """The Postgres server the benches use (CARBONLEDGER_DATABASE_URL, default the local one), as a libpq URL."""
    from store.engine import libpq_url

    return libpq_url(os.environ.get("CARBONLEDGER_DATABASE_URL", DEFAULT_SERVER))


@contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    """Create `<prefix>_<random>` on the bench server, migrate it, yield its URL; drop it (FORCE) afterwards."""
    import psycopg

    from store.migrate import upgrade

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
    This one costs a few tens of µs (wrk-like). One connection per concurrent request."""

    def __init__(self, host: str, port: int, size: int) -> None:
        self.host, self.port, self.size = host, port, size
        self._free: list = []
        self._ready = None

    async def __aenter__(self) -> "HttpClient":
        import asyncio

        loop = asyncio.get_running_loop()
        self._ready = asyncio.Queue()
        for _ in range(self.size):
            _, proto = await loop.create_connection(lambda: _HttpConnection(loop), self.host, self.port)
            self._ready.put_nowait(proto)
        return self

    async def __aexit__(self, *exc: object) -> None:
        while not self._ready.empty():
            self._ready.get_nowait().transport.close()

    async def post(self, path: str, body: bytes, content_type: bytes = b"application/json") -> tuple[int, bytes]:
        """(status, body) of one POST."""
        conn = await self._ready.get()
        try:
            return await conn.request(b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
                                      % (path.encode(), self.host.encode(), content_type, len(body)) + body)
        finally:
            self._ready.put_nowait(conn)


class _HttpConnection:
    def __init__(self, loop) -> None:
        import httptools

        self.loop, self.transport, self.waiter, self.chunks = loop, None, None, []
        self.parser = httptools.HttpResponseParser(self)

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
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
        self.waiter = self.loop.create_future()
        self.transport.write(raw)
        return await self.waiter
