"""What every daemon shares: /health, /ready and Prometheus /metrics routes, and graceful SIGTERM.

A daemon (arq style) is `run(settings)` with startup/shutdown hooks; it mounts `ops_routes(...)` into its own
Starlette app (oracle, API) or serves them alone on a side port (`OpsServer`, the indexer), and stops on SIGTERM
by setting a `threading.Event` that its loop checks between units of work (finish the block, flush, exit).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

ReadyCheck = Callable[[], tuple[bool, dict]]


def ops_routes(ready: ReadyCheck, registry: CollectorRegistry | None = None, health: ReadyCheck | None = None) -> list[Route]:
    """/health (process alive and its loop not wedged), /ready (caught up / able to serve), /metrics."""

    async def health_ep(request: Request) -> Response:
        ok, detail = health() if health else (True, {})
        return JSONResponse({"status": "ok" if ok else "unhealthy", **detail}, status_code=200 if ok else 503)

    async def ready_ep(request: Request) -> Response:
        ok, detail = ready()
        return JSONResponse({"ready": ok, **detail}, status_code=200 if ok else 503)

    async def metrics_ep(request: Request) -> Response:
        from prometheus_client import REGISTRY

        return Response(generate_latest(registry or REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return [Route("/health", health_ep), Route("/ready", ready_ep), Route("/metrics", metrics_ep)]


class ThreadedServer:
    """Runs an ASGI app on uvicorn in a background thread (port 0 picks a free one); the caller owns signals."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, name: str = "http") -> None:
        import uvicorn

        from core.wire import OneWriteHttpToolsProtocol

        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="auto", access_log=False,
                                http=OneWriteHttpToolsProtocol)
        self._server = uvicorn.Server(config)
        self._server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self._thread = threading.Thread(target=self._server.run, name=name, daemon=True)
        self.host, self.name = host, name

    @property
    def port(self) -> int:
        return self._server.servers[0].sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 10.0) -> ThreadedServer:
        import time

        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started and time.monotonic() < deadline and self._thread.is_alive():
            time.sleep(0.02)
        if not self._server.started:
            raise RuntimeError(f"{self.name} server could not listen on {self.host} (port taken?)")
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)

    def __enter__(self) -> ThreadedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class OpsServer(ThreadedServer):
    """Serves only the ops routes (the indexer's side port)."""

    def __init__(self, host: str, port: int, ready: ReadyCheck, registry: CollectorRegistry | None = None,
                 health: ReadyCheck | None = None) -> None:
        super().__init__(Starlette(routes=ops_routes(ready, registry, health)), host, port, name="ops")
