"""The per-request context: the database session, limits, and DataLoaders created for this request only."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gqlapi.db import Database, Session
from gqlapi.loaders import Loaders

if TYPE_CHECKING:
    from gqlapi.replicas import Router


@dataclass
class Limits:
    max_page_size: int = 1000
    default_page_size: int = 100
    request_timeout_ms: int = 10_000


@dataclass
class Context:
    """What every resolver sees as `info.context`."""

    db: Session
    limits: Limits
    loaders: Loaders = field(init=False)
    request: Any = None
    response: Any = None
    heads: dict[str, int] | None = None  # chain -> indexed head, loaded once when a block argument is checked
    deadline: float | None = None  # time.monotonic() after which execution stops (the executor and db check it)
    live: Any = None  # gqlapi.resolvers.live.Live, when live subscriptions are served
    connection_params: Any = None  # graphql-transport-ws connection_init payload
    live_closed: Any = None  # gqlapi.live.LiveClosed: why the server ended this live operation
    contracts: dict[str, dict[str, Any]] = field(default_factory=dict)  # chain -> contracts and start block (config)
    fork: Any = None  # a WebSocket connection's: makes the context of one of its operations (gqlapi.app._PerOperation)
    # The database clock's second (epoch, as gqlapi.answers.PROBE reads it) from which this answer may differ with
    # no new data (a window ending "now"); None: it does not move with time. See keep_until.
    valid_until: int | None = None
    keeping: bool = False  # the answer may be kept (gqlapi.answers): resolvers then say how long it holds

    def __post_init__(self) -> None:
        self.loaders = Loaders(self.db)

    def keep_until(self, second: int | None) -> None:
        """A resolver's answer holds only while the database clock's second is below `second` (None: no limit;
        0: never kept). The answer cache (gqlapi.answers) keeps the request's answer that long at most."""
        if second is not None and (self.valid_until is None or second < self.valid_until):
            self.valid_until = int(second)

    @classmethod
    def create(cls, db: Database | Router, limits: Limits, request: Any = None, response: Any = None, *,
               single: bool = False, contracts: dict[str, dict[str, Any]] | None = None,
               live: Any = None, primary: bool = False) -> "Context":
        """`single`: the request is expected to run one statement (see gqlapi.db.Session); `contracts`: the
        configured protocol contracts per chain (what a third party needs to check an answer on chain); `live`: the
        live-subscription service (gqlapi.resolvers.live.Live), when served; `primary`: read the primary, not a
        replica (gqlapi.replicas)."""
        deadline = time.monotonic() + limits.request_timeout_ms / 1000
        session = db.session(single, deadline, limits.request_timeout_ms, primary=True) if primary else \
            db.session(single, deadline, limits.request_timeout_ms)
        return cls(db=session, limits=limits, request=request,
                   response=response, deadline=deadline, contracts=contracts or {}, live=live)
