"""bench.common.HttpClient survives a server that closes idle keep-alive connections.

A tiny real HTTP server (asyncio, on a free port) answers POSTs with keep-alive and then closes connections the
way servers do: right after an answer (an idle timeout that fired), or when the next request arrives (the close
crossed our request on the wire). The bench client must send the request again on a fresh connection; it used to
hang on the dead connection or die with "the server closed the connection" (bench/api.py, issue 15).
"""

from __future__ import annotations

import asyncio

import pytest

from bench.common import HttpClient

DEADLINE = 30  # generous: the machine is shared


class _Server:
    """Answers `ok` to each request; `mode` says when it closes a connection: "after" (right after answering:
    its idle timeout fired), "next" (on the bytes of a connection's second request, without answering it)."""

    def __init__(self, mode: str) -> None:
        self.mode, self.answered, self.closed = mode, 0, 0
        self.changed = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
                await reader.readexactly(length)
                if self.mode == "next" and served == 1:
                    break
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
                served += 1
                self.answered += 1
                if self.mode == "after":
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self.closed += 1
            self.changed.set()

    async def wait_closed(self, n: int) -> None:
        async def until() -> None:
            while self.closed < n:
                self.changed.clear()
                await self.changed.wait()
        await asyncio.wait_for(until(), DEADLINE)


async def _run(mode: str) -> tuple[list[tuple[int, bytes]], int]:
    srv = _Server(mode)
    server = await asyncio.start_server(srv.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    out = []
    try:
        async with HttpClient("127.0.0.1", port, 1) as client:
            out.append(await asyncio.wait_for(client.post("/x", b"{}"), DEADLINE))
            if mode == "after":
                await srv.wait_closed(1)  # the server has closed the idle connection
                await asyncio.sleep(0)  # ...and the client's loop has run its connection_lost
            for _ in range(3):
                out.append(await asyncio.wait_for(client.post("/x", b"{}"), DEADLINE))
            reconnects = client.reconnects
    finally:
        server.close()
        await server.wait_closed()
    return out, reconnects


@pytest.mark.parametrize("mode", ["after", "next"])
def test_client_reconnects_when_the_server_closed_a_keepalive_connection(mode: str) -> None:
    answers, reconnects = asyncio.run(_run(mode))
    assert answers == [(200, b"ok")] * 4
    assert reconnects >= 1


async def _broken_mid_answer() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok")  # promises 10 bytes, sends 2, closes
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        async with HttpClient("127.0.0.1", server.sockets[0].getsockname()[1], 1) as client:
            await asyncio.wait_for(client.post("/x", b""), DEADLINE)
    finally:
        server.close()
        await server.wait_closed()


def test_a_connection_lost_mid_answer_is_an_error_not_a_retry() -> None:
    with pytest.raises(ConnectionError):
        asyncio.run(_broken_mid_answer())


async def _each(size: int) -> tuple[list[tuple[int, bytes]], dict[int, int], int, tuple[int, bytes]]:
    """post_each on a pool of `size` connections, one of which the server closed while it sat idle."""
    seen: dict[int, int] = {}  # client port -> requests answered on that connection
    done = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        port = writer.get_extra_info("peername")[1]
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length"))
                await reader.readexactly(length)
                seen[port] = seen.get(port, 0) + 1
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
                if seen[port] == 1 and len(seen) == 1:
                    break  # the first connection is closed after its first answer (an idle timeout)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            done.set()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        async with HttpClient("127.0.0.1", server.sockets[0].getsockname()[1], size) as client:
            first = await asyncio.wait_for(client.post("/x", b"{}"), DEADLINE)
            await asyncio.wait_for(done.wait(), DEADLINE)  # that connection is closed now
            await asyncio.sleep(0)
            answers = await asyncio.wait_for(client.post_each("/x", b"{}"), DEADLINE)
            reconnects = client.reconnects
    finally:
        server.close()
        await server.wait_closed()
    return answers, seen, reconnects, first


def test_post_each_sends_one_request_on_every_connection_of_the_pool() -> None:
    answers, seen, reconnects, first = asyncio.run(_each(5))
    assert first == (200, b"ok")
    assert answers == [(200, b"ok")] * 5
    # Six connections were used in all: the five of the pool, one of them replaced after the server closed it; each
    # carried exactly one request of post_each (the closed one carried the first post only).
    assert reconnects == 1
    assert sorted(seen.values()) == [1] * 6
