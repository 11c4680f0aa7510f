"""core.wire: a response's head and body leave in one socket write, and nothing is held past its loop turn.

The proxy's rules on a transport that records what reaches it, then uvicorn with the protocol on a real socket:
answers whole over keep-alive, each handed to the socket's transport in one write; a streamed answer's first part
arrives while the app still holds the rest; a client that shuts its side after its request still gets its answer.
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

    def get_extra_info(self, name: str) -> str | None:
        return "from the real transport" if name == "probe" else None

    def set_protocol(self, protocol: object) -> None:
        self.calls.append(("protocol", None))


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
        assert t.get_extra_info("probe") == "from the real transport"  # the rest is the real transport's
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


def test_big_writes_go_at_once_and_buffers_are_copied_and_non_bytes_refused() -> None:
    async def run() -> list:
        rec = _Recorder()
        t = TurnBufferedTransport(rec, asyncio.get_running_loop())  # type: ignore[arg-type]
        buf = bytearray(b"head ")
        t.write(buf)
        buf[:] = b"XXXXX"  # the caller reuses its buffer once write returned
        t.write(b"b" * TurnBufferedTransport.HOLD_MAX)  # reaches the bound: both go now, not at the end of the turn
        sent_at_once = list(rec.calls)
        with pytest.raises(TypeError):
            t.write("text")  # type: ignore[arg-type]  # refused in the caller, as asyncio's write refuses it
        await _turn()
        return [sent_at_once, rec.calls]

    at_once, after = asyncio.run(run())
    assert at_once == [("write", b"head " + b"b" * TurnBufferedTransport.HOLD_MAX)]
    assert after == at_once


def test_the_peer_ending_its_stream_sends_what_is_held_then_writes_go_straight_through() -> None:
    """The real transport closes itself when the peer's end of stream is reported (eof_received returns None)."""
    async def run() -> tuple[list, list]:
        loop = asyncio.get_running_loop()
        rec = _Recorder()
        proto = OneWriteHttpToolsProtocol(config=_config(), server_state=_state(), app_state={}, _loop=loop)
        proto.connection_made(rec)  # type: ignore[arg-type]
        proto.transport.write(b"held")
        assert proto.eof_received() is None
        rec.closing = True  # what the real transport does next
        proto.transport.write(b"late")  # a response written after that: straight through, as without the proxy
        await _turn()
        # After a WebSocket upgrade the real transport reports to the WebSocket protocol: its eof sends what is held.
        rec2 = _Recorder()
        t = TurnBufferedTransport(rec2, loop)  # type: ignore[arg-type]

        class Ws(asyncio.Protocol):
            def eof_received(self) -> None:
                rec2.calls.append(("ws eof", None))

        ws = Ws()
        t.set_protocol(ws)
        t.write(b"frame")
        ws.eof_received()
        return rec.calls, rec2.calls

    first, second = asyncio.run(run())
    assert first == [("write", b"held"), ("write", b"late")]
    assert second == [("protocol", None), ("write", b"frame"), ("ws eof", None)]


async def _nothing(scope, receive, send) -> None:
    pass


def _config() -> uvicorn.Config:
    cfg = uvicorn.Config(app=_nothing, log_level="warning", log_config=None)
    cfg.load()
    return cfg


def _state():
    from uvicorn.server import ServerState

    return ServerState()


def test_threaded_servers_speak_the_one_write_protocol() -> None:
    from core.service import ThreadedServer

    assert ThreadedServer(_nothing)._server.config.http is OneWriteHttpToolsProtocol


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
    writes: list[bytes] = []  # what reached the socket's own transport, write by write
    made = OneWriteHttpToolsProtocol.connection_made

    def counting(self: OneWriteHttpToolsProtocol, transport: asyncio.Transport) -> None:
        class Counted:
            def __getattr__(self, name: str) -> object:
                return getattr(transport, name)

            def write(self, data: bytes) -> None:
                writes.append(bytes(data))
                transport.write(data)

        made(self, Counted())  # type: ignore[arg-type]

    monkeypatch.setattr(OneWriteHttpToolsProtocol, "connection_made", counting)

    async def app(scope, receive, send) -> None:
        body = scope["path"].encode() * 1000
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    with _Served(app) as srv, httpx.Client(base_url=f"http://127.0.0.1:{srv.port}", timeout=DEADLINE) as client:
        for path in ("/a", "/bc", "/d"):
            r = client.get(path)
            assert r.status_code == 200 and r.text == path * 1000
    # Each answer's head and body left as one write of the socket's transport.
    assert [w.startswith(b"HTTP/1.1 200 OK") and w.endswith(p.encode() * 1000) for w, p in zip(writes, ("/a", "/bc", "/d"))] \
        == [True] * 3 and len(writes) == 3


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


def test_a_client_that_shuts_its_side_after_the_request_gets_the_answer() -> None:
    """`nc -N`, some health checks: request, then FIN. The real transport closes itself on that end of stream; an
    answer held for the end of the turn would have been dropped (it was, in 49 of 50 tries, before eof_received)."""
    async def app(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"5")]})
        await send({"type": "http.response.body", "body": b"hello"})

    with _Served(app) as srv:
        for _ in range(20):
            with socket.create_connection(("127.0.0.1", srv.port), timeout=DEADLINE) as c:
                c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                c.shutdown(socket.SHUT_WR)
                got = b""
                while chunk := c.recv(65536):
                    got += chunk
            assert got.startswith(b"HTTP/1.1 200 OK") and got.endswith(b"\r\n\r\nhello"), got
