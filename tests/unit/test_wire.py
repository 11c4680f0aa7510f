"""core.wire: a response's head and body leave in one socket write, and nothing is held past its loop turn.

The proxy's rules on a transport that records what reaches it, then uvicorn with the protocol on a real socket:
answers whole over keep-alive, a streamed answer's first part arrives while the app still holds the rest, and
writes of one turn reach the socket as one write (counted on the real transport's class).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import httpx
import pytest
import uvicorn

from core.wire import OneWriteHttpToolsProtocol, TurnBufferedTransport

DEADLINE = 30  # generous: the machine is shared


class _Recorder:
    """Stands for the socket's transport: what reached it, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes | None]] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.calls.append(("write", bytes(data)))

    def write_eof(self) -> None:
        self.calls.append(("eof", None))

    def close(self) -> None:
        self.closing = True
        self.calls.append(("close", None))

    def abort(self) -> None:
        self.closing = True
        self.calls.append(("abort", None))

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 7

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


async def _turn() -> None:
    await asyncio.sleep(0)
    await asyncio.sleep(0)


def test_writes_of_one_turn_leave_as_one_write_at_its_end() -> None:
    async def run() -> list:
        rec = _Recorder()
        t = TurnBufferedTransport(rec, asyncio.get_running_loop())  # type: ignore[arg-type]
        t.write(b"HTTP/1.1 200 OK\r\n\r\n")
        t.write(b"body")
        assert rec.calls == []  # held until the turn ends
        assert t.get_write_buffer_size() == 7 + 23
        await _turn()
        t.write(b"next turn")
        await _turn()
        t.writelines([b"a", b"b"])
        await _turn()
        assert t.get_extra_info("peername") == "info:peername"  # the rest is the real transport's
        return rec.calls

    assert asyncio.run(run()) == [("write", b"HTTP/1.1 200 OK\r\n\r\nbody"), ("write", b"next turn"), ("write", b"ab")]


def test_close_and_eof_send_what_is_held_first_and_abort_drops_it() -> None:
    async def run() -> tuple[list, list, list]:
        loop = asyncio.get_running_loop()
        a, b, c = _Recorder(), _Recorder(), _Recorder()
        ta, tb, tc = (TurnBufferedTransport(r, loop) for r in (a, b, c))  # type: ignore[arg-type]
        ta.write(b"last words")
        ta.close()
        tb.write(b"x")
        tb.write_eof()
        tc.write(b"never sent")
        tc.abort()
        await _turn()  # the flush scheduled by the first write finds nothing (or a closing transport)
        return a.calls, b.calls, c.calls

    a, b, c = asyncio.run(run())
    assert a == [("write", b"last words"), ("close", None)]
    assert b == [("write", b"x"), ("eof", None)]
    assert c == [("abort", None)]


def test_nothing_is_written_to_a_transport_that_closed_meanwhile() -> None:
    async def run() -> list:
        rec = _Recorder()
        t = TurnBufferedTransport(rec, asyncio.get_running_loop())  # type: ignore[arg-type]
        t.write(b"late")
        rec.closing = True  # the peer went away during the turn
        await _turn()
        return rec.calls

    assert asyncio.run(run()) == []


class _Served:
    """uvicorn (the protocol under test) on a free port in a thread, serving a small ASGI app."""

    def __init__(self, app) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    log_config=None, lifespan="off", http=OneWriteHttpToolsProtocol))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> _Served:
        self.thread.start()
        deadline = time.monotonic() + DEADLINE
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(DEADLINE)


def test_uvicorn_answers_whole_over_keepalive_with_one_write_per_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    writes: list[int] = []
    real = TurnBufferedTransport._flush

    def counting(self: TurnBufferedTransport) -> None:
        if self._held:
            writes.append(len(self._held))
        real(self)

    monkeypatch.setattr(TurnBufferedTransport, "_flush", counting)

    async def app(scope, receive, send) -> None:
        body = scope["path"].encode() * 1000
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    with _Served(app) as srv, httpx.Client(base_url=f"http://127.0.0.1:{srv.port}", timeout=DEADLINE) as client:
        for path in ("/a", "/bc", "/d"):
            r = client.get(path)
            assert r.status_code == 200 and r.text == path * 1000
    # Each answer's head and body were held together and left as one write of the real transport.
    assert writes == [2, 2, 2]


def test_a_streamed_answer_is_not_held_back() -> None:
    """The app sends its head and first part, then waits for the client to have read that part before it sends the
    rest: if anything were held past its turn, the client would never see the first part and this would time out."""
    first_read = threading.Event()

    async def app(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        await send({"type": "http.response.body", "body": b"data: one\n\n", "more_body": True})
        deadline = time.monotonic() + DEADLINE
        while not first_read.is_set():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b"data: two\n\n", "more_body": False})

    with _Served(app) as srv, httpx.Client(timeout=DEADLINE) as client:
        with client.stream("GET", f"http://127.0.0.1:{srv.port}/events") as r:
            chunks = r.iter_raw()
            got = b""
            while b"one" not in got:
                got += next(chunks)
            first_read.set()
            rest = b"".join(chunks)
    assert got + rest == b"data: one\n\ndata: two\n\n"
