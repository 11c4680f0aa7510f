"""uvicorn's HTTP/1.1 protocol (httptools), with a response's head and body leaving in one socket write: the
protocol of `carbonledger serve`, the oracle's HTTP server and core.service.ThreadedServer.

uvicorn writes the status line and headers when the app sends `http.response.start`, and the body when it sends
`http.response.body`: two `transport.write` calls, and with an empty write buffer each is a `send()` of its own at
once. On a small server a send that wakes the reader costs more than building the answer: profiled under 8
keep-alive clients, answers from the answer cache spent ~20% of the worker's CPU (of GIL samples) in those two
writes. Here the protocol's transport gathers what is written during one turn of the event loop and sends it at the
end of that turn: an app that sends head and body back to back (ours always does, strawberry's responses too) costs
one send, and nothing waits longer than the turn in which it was written. A streamed response (SSE) flushes each
turn as before. uvicorn has no option for this (its h11 protocol writes the same way).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class TurnBufferedTransport:
    """A transport proxy: `write`s within one loop turn leave as one `write` of the real transport at the end of
    the turn; `close` and `write_eof` send what is held first, `abort` drops it. Everything else is the real
    transport's (a WebSocket upgrade hands this proxy on to the WebSocket protocol, whose frames gather the same
    way)."""

    __slots__ = ("_transport", "_loop", "_held")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        if self._held is None:
            self._held = [data]
            self._loop.call_soon(self._flush)
        else:
            self._held.append(data)

    def _flush(self) -> None:
        held, self._held = self._held, None
        if held and not self._transport.is_closing():
            self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def writelines(self, chunks: Any) -> None:
        for c in chunks:
            self.write(c)

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._held or ()))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class OneWriteHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over a TurnBufferedTransport (module docstring); pass as uvicorn's `http`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(TurnBufferedTransport(transport, self.loop))  # type: ignore[arg-type]
