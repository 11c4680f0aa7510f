"""Handlers are plain functions registered under "Contract:Event", spelled as in the ABI (Ponder style)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chains.base import ChainEvent
    from indexer.context import Context

Handler = Callable[["ChainEvent", "Context"], None]
HANDLERS: dict[str, Handler] = {}


def handler(key: str) -> Callable[[Handler], Handler]:
    """Register `fn` for events keyed "Contract:Event"; a second handler for the same key is a bug."""
    if key.count(":") != 1 or key.startswith(":") or key.endswith(":"):
        raise ValueError(f"handler key must be 'Contract:Event' (one colon), got {key!r}")

    def deco(fn: Handler) -> Handler:
        if key in HANDLERS and HANDLERS[key] is not fn:
            raise ValueError(f"two handlers for {key}: {HANDLERS[key].__module__} and {fn.__module__}")
        HANDLERS[key] = fn
        return fn

    return deco


def load_handlers() -> dict[str, Handler]:
    """Import every handler module (registration happens at import)."""
    from indexer.handlers import auction, carbon_credit, escrow, iot_anchor, marketplace, qr_payment  # noqa: F401
    from indexer.handlers import carbonmark, icr, klima, toucan  # noqa: F401  (existing markets)

    return HANDLERS
