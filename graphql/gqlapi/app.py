"""The ASGI app: GraphQL (and GraphiQL) at /graphql, plus /health, /ready and /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route
from strawberry.asgi import GraphQL

from carbonledger.config import Settings
from carbonledger.service import ops_routes
from gqlapi import graphiql
from gqlapi.context import Context, Limits
from gqlapi.db import Database
from gqlapi.endpoint import GraphQLEndpoint
from gqlapi.schema import make_schema


class _Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("api_requests_total", "GraphQL HTTP requests", ["status"], registry=self.registry)
        self.latency = Histogram("api_request_seconds", "GraphQL request latency", registry=self.registry,
                                 buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.statements = Gauge("api_sql_statements", "SQL statements run since start", registry=self.registry)
        self.db_up = Gauge("api_database_up", "1 when the last database ping succeeded", registry=self.registry)


class _TimedGraphQL:
    """ASGI wrapper that records latency and status of every /graphql request."""

    def __init__(self, app: Any, metrics: _Metrics, db: Database) -> None:
        self.app, self.metrics, self.db = app, metrics, db
        self._by_status: dict[int, Any] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 500}

        async def send_wrapper(message: Any) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        t0 = time.perf_counter()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.latency.observe(time.perf_counter() - t0)
            code = status["code"]
            child = self._by_status.get(code)
            if child is None:
                child = self._by_status[code] = self.metrics.requests.labels(str(code))
            child.inc()
            self.metrics.statements.set(self.db.statements)


def create_app(settings: Settings, database_url: str, *, pool_size: int | None = None) -> Starlette:
    """Build the API app for `database_url` with the limits in `settings.api`."""
    db = Database(database_url, settings.database.statement_timeout_ms, max_size=pool_size or settings.api.pool_size,
                  generic_plans=settings.api.generic_plans)
    limits = Limits(max_page_size=settings.api.max_page_size, default_page_size=min(100, settings.api.max_page_size),
                    request_timeout_ms=settings.api.request_timeout_ms)
    metrics = _Metrics()
    state = {"db": False}

    class View(GraphQL):
        async def get_context(self, request: Any, response: Any) -> Context:  # type: ignore[override]
            return Context.create(db, limits, request, response)

        def encode_json(self, data: object) -> bytes:  # type: ignore[override]
            return orjson.dumps(data)

        async def render_graphql_ide(self, request: Any) -> Any:  # type: ignore[override]
            return HTMLResponse(graphiql.offline_html(self.graphql_ide_html))

    schema = make_schema(settings.api)
    view = View(schema, graphql_ide="graphiql" if settings.api.graphiql else None, allow_queries_via_get=True)
    endpoint = GraphQLEndpoint(schema, view, lambda single: Context.create(db, limits, single=single),
                               max_body_bytes=settings.api.max_body_bytes)
    graphql_app = _TimedGraphQL(endpoint, metrics, db)

    async def watch_db() -> None:
        while True:
            state["db"] = await db.ping()
            metrics.db_up.set(1 if state["db"] else 0)
            await asyncio.sleep(2)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await db.open()
        # Everything built at start-up (modules, the schema, its types) is long-lived: frozen, the collector stops
        # re-scanning it, which otherwise made each full collection a ~60 ms pause under load (the API's p99).
        gc.collect()
        gc.freeze()
        task = asyncio.create_task(watch_db())
        try:
            yield
        finally:
            task.cancel()
            await db.close()

    def ready() -> tuple[bool, dict]:
        return state["db"], {"database": state["db"]}

    app = _App(
        routes=[Route("/graphql", graphql_app, methods=["GET", "POST"]), *graphiql.asset_routes(),
                *ops_routes(ready, metrics.registry)],
        lifespan=lifespan,
    )
    app.state.db = db
    app.state.graphql = endpoint
    app.graphql_post = graphql_app
    return app


class _App(Starlette):
    """Starlette, except that POST /graphql goes straight to the (timed) GraphQL endpoint: the hot path skips the
    router and Starlette's middleware layers (the endpoint answers every error itself; measured ~4% of a small
    query's CPU)."""

    graphql_post: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == "/graphql" \
                and self.graphql_post is not None:
            scope["app"] = self
            await self.graphql_post(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def app_from_env() -> Starlette:
    """uvicorn factory (`--factory gqlapi.app:app_from_env`): settings from config file and env."""
    from carbonledger.config import load_settings
    from carbonledger.database import resolve_database_url
    from carbonledger.logs import setup_logging

    settings = load_settings()
    setup_logging(settings.log_level)  # each worker process logs JSON lines at the configured level
    return create_app(settings, resolve_database_url(settings))
