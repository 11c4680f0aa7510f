"""The ASGI app: GraphQL (and GraphiQL) at /graphql, plus /health, /ready and /metrics.

Nothing a client sends may end in a bare 500 or a logged traceback: JSON the view cannot read is its 400
(`decode_json`), and any exception that still escapes is answered with a coded JSON 500 and logged as one line
(`_answer_unexpected`; the traceback at DEBUG), on the lean POST path as on Starlette's routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.applications import Starlette
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route, WebSocketRoute
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler

from core import heap
from core.config import ApiSettings, Settings
from core.ratelimit import ClientLimit, client_from_scope, in_networks, proxy_networks
from core.service import ops_routes
from gqlapi import graphiql
from gqlapi.context import Context, Limits
from gqlapi.db import Database
from gqlapi.endpoint import GraphQLEndpoint
from gqlapi.errors import INTERNAL, RATE_LIMITED
from gqlapi.live import Hub
from gqlapi.replicas import Router
from gqlapi.resolvers.live import Live
from gqlapi.schema import make_schema
from gqlapi.sse import sse_route

log = logging.getLogger("gqlapi")
_INTERNAL_BODY = orjson.dumps({"errors": [{"message": "Unexpected error.", "extensions": {"code": INTERNAL}}]})


class _Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("api_requests_total", "GraphQL HTTP requests", ["status"], registry=self.registry)
        self.latency = Histogram("api_request_seconds", "GraphQL request latency", registry=self.registry,
                                 buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.statements = Gauge("api_sql_statements", "SQL statements run since start", registry=self.registry)
        self.db_up = Gauge("api_database_up", "1 when the last database ping succeeded", registry=self.registry)


class _Gate:
    """The per-client rate limit of /graphql (api.rate_limit). The client is the peer address, or the forwarded
    one when the peer is a trusted proxy (core.ratelimit); exempt clients (loopback by default) are one
    dict lookup per request, which is all the hot path pays when the benchmark drives the API from 127.0.0.1."""

    _MEMO_MAX = 65_536

    def __init__(self, api: ApiSettings) -> None:
        self.limit = ClientLimit(api.rate_limit, "api")
        self.proxies = proxy_networks(api.trusted_proxies)
        self.exempt_nets = proxy_networks(api.rate_limit_exempt)
        self._exempt: dict[str, bool] = {}

    def wait(self, scope: Any) -> float | None:
        """None when the request may go on, else the seconds to wait (the request was counted)."""
        if self.limit.item is None:
            return None
        if self.proxies:
            client = client_from_scope(scope, self.proxies)
        else:  # client_from_scope's answer without a proxy, inlined: its call cost 0.09 µs on every request
            peer = scope.get("client")
            client = peer[0] if peer else "unknown"
        exempt = self._exempt.get(client)
        if exempt is None:
            if len(self._exempt) >= self._MEMO_MAX:
                self._exempt.clear()
            exempt = self._exempt[client] = in_networks(client, self.exempt_nets)
        return None if exempt else self.limit.hit(client)


class _TimedGraphQL:
    """ASGI wrapper that records latency and status of every /graphql request, after its client's rate limit."""

    def __init__(self, app: Any, metrics: _Metrics, db: Router, gate: _Gate) -> None:
        self.app, self.metrics, self.db, self.gate = app, metrics, db, gate
        self._by_status: dict[int, Any] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 0}  # 0 until the response starts

        async def send_wrapper(message: Any) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        t0 = time.perf_counter()
        try:
            wait = self.gate.wait(scope)
            if wait is None:
                await self.app(scope, receive, send_wrapper)
            else:
                await _too_many(send_wrapper, wait)
        except Exception as exc:  # noqa: BLE001 - an answer, never a bare 500 and a traceback
            await _answer_unexpected(exc, scope, send_wrapper, started=status["code"] != 0)
        finally:
            self.metrics.latency.observe(time.perf_counter() - t0)
            code = status["code"] or 500  # no response (the client left): counted as before
            child = self._by_status.get(code)
            if child is None:
                child = self._by_status[code] = self.metrics.requests.labels(str(code))
            child.inc()
            self.metrics.statements.set(self.db.statements)


async def _too_many(send: Any, wait: float) -> None:
    seconds = str(int(wait))
    body = orjson.dumps({"errors": [{"message": f"too many requests from this client; retry after {seconds} s",
                                     "extensions": {"code": RATE_LIMITED}}]})
    await send({"type": "http.response.start", "status": 429,
                "headers": [(b"content-type", b"application/json"), (b"retry-after", seconds.encode()),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _answer_unexpected(exc: Exception, scope: Any, send: Any, *, started: bool) -> None:
    """An exception escaped the app: one log line (the traceback only at DEBUG: a client can provoke this, so
    it must not flood the log), and, unless the response had started, a coded JSON 500."""
    log.error("unexpected error answering %s %s: %s", scope.get("method"), scope.get("path"), type(exc).__name__)
    log.debug("traceback of the unexpected error", exc_info=exc)
    if not started:
        await send({"type": "http.response.start", "status": 500,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(_INTERNAL_BODY)).encode())]})
        await send({"type": "http.response.body", "body": _INTERNAL_BODY})


def _decode_json(data: str | bytes) -> object:
    """json.loads, whose every failure is a JSONDecodeError, the one strawberry's view answers with a 400: a
    number of over 4,300 digits raises a plain ValueError (Python's int limit) and deep nesting RecursionError.
    (Not orjson, the lean path's reader: it refuses lone surrogate escapes, which the view's BAD_USER_INPUT check
    names, and reads integers past 2^64 as floats.)"""
    try:
        return json.loads(data)
    except json.JSONDecodeError:
        raise
    except (ValueError, RecursionError) as exc:
        raise json.JSONDecodeError(f"unreadable JSON ({type(exc).__name__})", "", 0) from None


def configured_contracts(settings: Settings) -> dict[str, dict[str, Any]]:
    """chain -> {"contracts": name -> address, "start": first block, "family", "package"}: how `carbonledger verify`
    names each configured chain's protocol (its family's `ChainReader.verify_source`); a chain whose addresses do not
    resolve here is left out (the API serves the database either way)."""
    from chains.base import load_family

    out = {}
    for name, cs in settings.chains.items():
        src = load_family(cs.family).reader.verify_source(name, cs)
        if src is not None:
            out[name] = {"contracts": dict(src.contracts), "start": src.start, "family": src.family,
                         "package": src.package}
    return out


def create_app(settings: Settings, database_url: str, *, pool_size: int | None = None) -> Starlette:
    """Build the API app for `database_url` (the primary; reads on `database.read_url` replicas when set, see
    gqlapi.replicas) with the limits in `settings.api`."""
    primary = Database(database_url, settings.database.statement_timeout_ms,
                       max_size=pool_size or settings.api.pool_size, generic_plans=settings.api.generic_plans)
    db = Router(primary, settings.database.read_urls, max_lag_s=settings.database.replica_max_lag_s,
                check_s=settings.database.replica_check_s, generic_plans=settings.api.generic_plans)
    limits = Limits(max_page_size=settings.api.max_page_size, default_page_size=min(100, settings.api.max_page_size),
                    request_timeout_ms=settings.api.request_timeout_ms)
    metrics = _Metrics()
    state = {"db": False}
    contracts = configured_contracts(settings)
    api = settings.api
    hub = Hub(api.live_listen_url or database_url, queue_size=api.live_queue, max_subscribers=api.live_max_subscriptions,
              per_client=api.live_per_client) if api.live else None
    live = Live(hub, db, max_replay=api.live_max_replay, trusted_proxies=proxy_networks(api.trusted_proxies),
                authenticated=api.live_token is not None, replica_wait_s=settings.database.replica_max_lag_s) \
        if hub is not None else None
    token = api.live_token.get_secret_value() if api.live_token is not None else None

    class View(GraphQL):
        graphql_transport_ws_handler_class = _PerOperation

        async def get_context(self, request: Any, response: Any) -> Context:  # type: ignore[override]
            ctx = Context.create(db, limits, request, response, contracts=contracts, live=live)
            if request.scope.get("type") == "websocket":
                ctx.deadline = None  # a connection's operations are not one request: no request time budget

                def operation() -> Context:  # _PerOperation: a context of its own for each operation
                    op = Context.create(db, limits, request, response, contracts=contracts, live=live)
                    op.deadline, op.connection_params, op.fork = None, ctx.connection_params, operation
                    return op

                ctx.fork = operation
            return ctx

        async def on_ws_connect(self, context: Any) -> Any:  # type: ignore[override]
            if live is None:
                raise ConnectionRejectionError({"message": "live updates are not enabled on this server (api.live)"})
            if token is not None:
                given = (context.connection_params or {}).get("token")
                if not isinstance(given, str) or not hmac.compare_digest(given.encode(), token.encode()):
                    raise ConnectionRejectionError({"message": "live updates need connection_init {\"token\": ...}"})
            return await super().on_ws_connect(context)

        def encode_json(self, data: object) -> str:  # type: ignore[override]
            # Text, not bytes: strawberry sends bytes as binary WebSocket frames, and graphql-transport-ws clients
            # (GraphiQL's among them) read only text frames. (The hot POST path is gqlapi.endpoint, not this view.)
            return orjson.dumps(data).decode()

        def decode_json(self, data: str | bytes) -> object:
            return _decode_json(data)

        async def render_graphql_ide(self, request: Any) -> Any:  # type: ignore[override]
            return HTMLResponse(graphiql.offline_html(self.graphql_ide_html))

    schema = make_schema(settings.api)
    view = View(schema, graphql_ide="graphiql" if settings.api.graphiql else None, allow_queries_via_get=True,
                subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
                max_subscriptions_per_connection=api.live_per_connection)
    endpoint = GraphQLEndpoint(schema, view, lambda single, primary=False: Context.create(
                                   db, limits, single=single, contracts=contracts, primary=primary),
                               max_body_bytes=settings.api.max_body_bytes,
                               answer_bytes=settings.api.answer_cache_mb * 1_048_576,
                               # the wait for a pooled connection (10 s) plus the statement's own timeout
                               probe_timeout_s=10 + settings.database.statement_timeout_ms / 1000)
    graphql_app = _TimedGraphQL(endpoint, metrics, db, _Gate(settings.api))

    async def watch_db() -> None:
        while True:
            state["db"] = await db.ping()
            metrics.db_up.set(1 if state["db"] else 0)
            await asyncio.sleep(2)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await db.open()
        if hub is not None:
            await hub.start()
        # Everything built at start-up (modules, the schema, its types) is long-lived: frozen, the collector stops
        # re-scanning it, which otherwise made each full collection a ~60 ms pause under load (the API's p99).
        # Young collections keep CPython's spacing here: a request leaves little alive, and spacing them out as the
        # indexer does measured no better (bench/peers.py, 200k events, two A/B pairs: within the noise).
        heap.settle(young=None)
        task = asyncio.create_task(watch_db())
        try:
            yield
        finally:
            task.cancel()
            if hub is not None:
                await hub.close()
            await db.close()

    if hub is not None:
        Gauge("api_live_subscriptions", "Live subscriptions open in this process", registry=metrics.registry) \
            .set_function(lambda: len(hub.subscribers))
        Gauge("api_live_slow_consumers_dropped", "Live subscriptions dropped as slow consumers since start",
              registry=metrics.registry).set_function(lambda: hub.dropped)
        Gauge("api_live_notices", "Live notices received since start", registry=metrics.registry) \
            .set_function(lambda: hub.notices)

    if endpoint.answers is not None:
        answers = endpoint.answers
        Gauge("api_answer_cache_hits", "Requests answered from the answer cache since start", registry=metrics.registry) \
            .set_function(lambda: answers.hits)
        Gauge("api_answer_cache_misses", "Cacheable requests executed since start (then kept for their state)",
              registry=metrics.registry).set_function(lambda: answers.misses)
        Gauge("api_answer_cache_bytes", "Bytes of answers kept", registry=metrics.registry) \
            .set_function(lambda: answers.bytes)
        probe = endpoint.probe
        Gauge("api_answer_state_reads", "Reads of the database state for answer-cache lookups since start (shared by "
              "the lookups that arrive while one runs)", registry=metrics.registry).set_function(lambda: probe.reads)

    if db.replicas:
        healthy = Gauge("api_replica_healthy", "1 when the read replica is used (reachable, a standby, lag within "
                        "database.replica_max_lag_s)", ["replica"], registry=metrics.registry)
        lag = Gauge("api_replica_lag_seconds", "Replay lag of the read replica at its last check (-1: unknown)",
                    ["replica"], registry=metrics.registry)
        for r in db.replicas:
            healthy.labels(r.name).set_function(lambda r=r: 1 if r.healthy else 0)
            lag.labels(r.name).set_function(lambda r=r: -1 if r.lag_s is None else r.lag_s)
        Gauge("api_primary_read_sessions", "Request sessions read on the primary although replicas are configured "
              "(none healthy)", registry=metrics.registry).set_function(lambda: db.primary_reads)

    def ready() -> tuple[bool, dict]:
        detail: dict[str, Any] = {"database": state["db"]}
        if hub is not None:  # informative: queries are served without the listener; subscriptions wait for it
            detail["live_listener"] = hub.connected.is_set()
        if db.replicas:  # queries are served while the primary or a healthy replica answers
            detail["replicas"] = db.status()
            return state["db"] or db.any_healthy(), detail
        return state["db"], detail

    routes = [Route("/graphql", graphql_app, methods=["GET", "POST"]), WebSocketRoute("/graphql", view)]
    if live is not None:
        stream = sse_route(schema, lambda request: _live_context(Context.create(db, limits, request, contracts=contracts,
                                                                                live=live)),
                           max_body_bytes=api.max_body_bytes, token=token)
        routes.append(Route("/graphql/stream", stream, methods=["GET", "POST"]))
    app = _App(
        routes=[*routes, *graphiql.asset_routes(),
                *ops_routes(ready, metrics.registry)],
        lifespan=lifespan,
        exception_handlers={Exception: _internal_error},  # Starlette's own 500 (then re-raised to _App) is coded JSON
    )
    app.state.db = db
    app.state.hub = hub
    app.state.graphql = endpoint
    app.graphql_post = graphql_app
    return app


_OPERATION: contextvars.ContextVar[Context | None] = contextvars.ContextVar("gqlapi_ws_operation", default=None)


class _PerOperation(BaseGraphQLTransportWSHandler):
    """graphql-transport-ws with one database snapshot and one set of DataLoaders per operation. Strawberry hands
    the connection's one context to every operation: CloseSession would end its snapshot with the first operation
    (every later query on the connection failed with "the request has ended"), and its DataLoaders would cache
    answers for the connection's lifetime. Each operation runs in its own task; there `context` is that
    operation's (`fork()` of the connection's), elsewhere the connection's (connection_init writes its params)."""

    @property  # type: ignore[override]
    def context(self) -> Any:
        op = _OPERATION.get()
        return op if op is not None else self._connection

    @context.setter
    def context(self, value: Any) -> None:
        self._connection = value

    async def run_operation(self, operation: Any) -> None:  # type: ignore[override]
        fork = getattr(self._connection, "fork", None)
        token = _OPERATION.set(fork() if fork is not None else None)  # this task's own (a task copies the vars)
        try:
            await super().run_operation(operation)
        finally:
            _OPERATION.reset(token)


def _live_context(ctx: Context) -> Context:
    ctx.deadline = None  # a stream's messages are not one request: no request time budget
    return ctx


async def _internal_error(request: Any, exc: Exception) -> Response:
    return Response(_INTERNAL_BODY, status_code=500, media_type="application/json")


class _App(Starlette):
    """Starlette, except that POST /graphql goes straight to the (timed) GraphQL endpoint: the hot path skips the
    router and Starlette's middleware layers (the endpoint answers every error itself, and the timed wrapper
    whatever escapes it; measured ~4% of a small query's CPU). On the other routes Starlette answers an escaping
    exception (`_internal_error`) and re-raises it; it ends here, logged as one line, not in uvicorn's log."""

    graphql_post: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == "/graphql" \
                and self.graphql_post is not None:
            scope["app"] = self
            await self.graphql_post(scope, receive, send)
            return
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        started = False

        async def tracked(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await super().__call__(scope, receive, tracked)
        except Exception as exc:  # noqa: BLE001 - see the class docstring
            await _answer_unexpected(exc, scope, send, started=started)


def app_from_env() -> Starlette:
    """uvicorn factory (`--factory gqlapi.app:app_from_env`): settings from config file and env."""
    from core.config import load_settings
    from core.database import resolve_database_url
    from core.logs import setup_logging

    settings = load_settings()
    setup_logging(settings.log_level)  # each worker process logs JSON lines at the configured level
    _end_with_supervisor()
    return create_app(settings, resolve_database_url(settings))


def _end_with_supervisor(grace_s: float = 10.0) -> None:
    """In a worker of `serve --workers N`: stop when the supervisor process is gone, even SIGKILLed (uvicorn's
    workers otherwise live on as orphans holding the port, and a restarted API cannot bind it).

    Waits on multiprocessing's parent sentinel (a pipe from the supervisor that reads EOF once it has exited), so a
    supervisor that died before this worker got here is seen at once; `getppid()` polling missed that case (the
    worker, still importing, was already reparented). A graceful SIGTERM to itself first; if that has not ended the
    worker after `grace_s` (open connections), exit."""
    import multiprocessing
    import os
    import signal
    import threading

    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()  # returns when the supervisor has exited
        log.warning("the API's supervisor process is gone; this worker stops", extra={"worker": os.getpid()})
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace_s)
        os._exit(0)

    threading.Thread(target=watch, name="supervisor-watch", daemon=True).start()
