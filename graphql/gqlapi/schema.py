"""The root Query and the schema with its protections (depth, aliases, tokens, masking) and caches."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import logging

import strawberry
from graphql.error import GraphQLError
from strawberry.extensions import (
    AddValidationRules,
    MaskErrors,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig

from carbonledger.config import ApiSettings
from gqlapi.errors import should_mask
from gqlapi.executor import FastExecutionContext
from gqlapi.scalars import SCALARS
from gqlapi.resolvers.certificates import certificate, certificates
from gqlapi.resolvers.escrow import escrow_orders
from gqlapi.resolvers.events import iot_anchors, qr_payments, settlements
from gqlapi.resolvers.listings import listings
from gqlapi.resolvers.market import candles, market_stats
from gqlapi.resolvers.meta import meta
from gqlapi.resolvers.portfolio import portfolio
from gqlapi.resolvers.provenance import provenance
from gqlapi.resolvers.trades import trades

log = logging.getLogger("gqlapi")


@strawberry.type(description="carbonledger: carbon credits, their markets, escrow orders and IoT proofs, as indexed.")
class Query:
    portfolio = strawberry.field(resolver=portfolio)
    certificates = strawberry.field(resolver=certificates)
    certificate = strawberry.field(resolver=certificate)
    provenance = strawberry.field(resolver=provenance)
    market_stats = strawberry.field(resolver=market_stats)
    candles = strawberry.field(resolver=candles)
    listings = strawberry.field(resolver=listings)
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
    """The schema with limits from `api` (defaults when None)."""
    api = api or ApiSettings()
    # Rule classes are built once: ValidationCache keys on them, so per-request classes would never hit.
    rules = [*QueryDepthLimiter(max_depth=api.max_depth).validation_rules,
             *MaxAliasesLimiter(max_alias_count=api.max_aliases).validation_rules]
    schema = Schema(
        query=Query,
        config=StrawberryConfig(auto_camel_case=True, scalar_map=SCALARS),
        execution_context_class=FastExecutionContext,
        extensions=[
            lambda: MaxTokensLimiter(max_token_count=api.max_tokens),
            lambda: ParserCache(maxsize=512),
            lambda: AddValidationRules(rules),
            lambda: ValidationCache(maxsize=512),
            lambda: MaskErrors(should_mask_error=should_mask),
            CloseSession,
        ],
    )
    # What gqlapi.endpoint needs to prepare documents exactly as these extensions would check them.
    schema.carbon_validation_rules = tuple(rules)  # type: ignore[attr-defined]
    schema.carbon_max_tokens = api.max_tokens  # type: ignore[attr-defined]
    return schema


schema = make_schema()
