"""The root Query and the schema with its protections (admission limits, masking) and caches."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import logging

import strawberry
from graphql.error import GraphQLError
from strawberry.extensions import MaskErrors, SchemaExtension
from strawberry.schema.config import StrawberryConfig

from core.config import ApiSettings
from core.ratelimit import proxy_networks
from gqlapi.errors import should_mask
from gqlapi.executor import FastExecutionContext
from gqlapi.costs import DocumentLimits
from gqlapi.guard import Admission, Guard
from gqlapi.scalars import SCALARS
from gqlapi.resolvers.auctions import auction, auctions
from gqlapi.resolvers.certificates import certificate, certificates
from gqlapi.resolvers.escrow import escrow_orders
from gqlapi.resolvers.events import iot_anchors, qr_payments, settlements
from gqlapi.resolvers.listings import listings
from gqlapi.resolvers.live import Subscription
from gqlapi.resolvers.market import candles, market_stats
from gqlapi.resolvers.meta import meta
from gqlapi.resolvers.portfolio import portfolio
from gqlapi.resolvers.provenance import provenance
from gqlapi.resolvers.reports import retirement_report
from gqlapi.resolvers.trades import trades

log = logging.getLogger("gqlapi")


@strawberry.type(description="carbonledger: carbon credits, their markets, escrow orders and IoT proofs, as indexed.")
class Query:
    portfolio = strawberry.field(resolver=portfolio)
    certificates = strawberry.field(resolver=certificates)
    certificate = strawberry.field(resolver=certificate)
    provenance = strawberry.field(resolver=provenance)
    retirement_report = strawberry.field(resolver=retirement_report)
    market_stats = strawberry.field(resolver=market_stats)
    candles = strawberry.field(resolver=candles)
    listings = strawberry.field(resolver=listings)
    auctions = strawberry.field(resolver=auctions)
    auction = strawberry.field(resolver=auction)
    trades = strawberry.field(resolver=trades)
    escrow_orders = strawberry.field(resolver=escrow_orders)
    qr_payments = strawberry.field(resolver=qr_payments)
    settlements = strawberry.field(resolver=settlements)
    iot_anchors = strawberry.field(resolver=iot_anchors)
    meta = strawberry.field(resolver=meta, name="_meta")


class CloseSession(SchemaExtension):
    """Ends the request's database snapshot and returns its connection once the operation is done."""

    async def on_operation(self) -> AsyncIterator[None]:  # type: ignore[override]
        try:
            yield
        finally:
            ctx: Any = self.execution_context.context
            db = getattr(ctx, "db", None)
            if db is not None:
                await db.close()


class Schema(strawberry.Schema):
    """Logs only unexpected errors (in `should_mask`); client mistakes are answers, not incidents."""

    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        for e in errors:
            log.debug("graphql error: %s", e.message)


def make_schema(api: ApiSettings | None = None) -> strawberry.Schema:
    """The schema with limits from `api` (defaults when None); `schema.carbon_guard` admits its documents."""
    api = api or ApiSettings()
    guard: list[Guard] = []  # made once the graphql-core schema exists; the extension factory runs per request
    schema = Schema(
        query=Query,
        subscription=Subscription,
        config=StrawberryConfig(auto_camel_case=True, scalar_map=SCALARS),
        execution_context_class=FastExecutionContext,
        extensions=[
            lambda: Admission(guard[0]),
            lambda: MaskErrors(should_mask_error=should_mask),
            CloseSession,
        ],
    )
    limits = DocumentLimits(max_tokens=api.max_tokens, max_query_bytes=api.max_query_bytes, max_depth=api.max_depth,
                            max_aliases=api.max_aliases, max_selections=api.max_selections,
                            merge_budget=api.max_merge_checks)
    guard.append(Guard(schema._schema, limits, time_budget=api.validation_timeout_ms / 1000,
                       queue_size=api.admission_queue, per_client=api.admission_per_client,
                       trusted_proxies=proxy_networks(api.trusted_proxies)))
    schema.carbon_guard = guard[0]  # type: ignore[attr-defined]
    return schema


schema = make_schema()
