"""Errors a client may see, their codes, and the rule that masks everything else.

A `UserError` carries a message written for the client (a bad argument, a page too large, a timeout) and a code
(`extensions.code`, BAD_USER_INPUT unless said otherwise); any other exception raised while resolving is logged
and replaced by "Unexpected error." so no SQL, stack trace or internal detail reaches a response. Parse and
validation errors from graphql-core have no original error and pass through (gqlapi.guard adds their codes).
"""

from __future__ import annotations

import logging
from typing import Any

from graphql.error import GraphQLError

log = logging.getLogger("gqlapi")

# `extensions.code` of the errors a client can provoke.
BAD_USER_INPUT = "BAD_USER_INPUT"
PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
MAX_TOKENS = "MAX_TOKENS_EXCEEDED"
MAX_QUERY_BYTES = "MAX_QUERY_BYTES_EXCEEDED"
MAX_DEPTH = "MAX_DEPTH_EXCEEDED"
MAX_ALIASES = "MAX_ALIASES_EXCEEDED"
MAX_SELECTIONS = "MAX_SELECTIONS_EXCEEDED"
FRAGMENT_CYCLE = "FRAGMENT_CYCLE"
QUERY_TOO_COMPLEX = "QUERY_TOO_COMPLEX"
TIME_BUDGET = "TIME_BUDGET_EXCEEDED"
STATEMENT_TIMEOUT = "STATEMENT_TIMEOUT"
SERVICE_BUSY = "SERVICE_BUSY"
RATE_LIMITED = "RATE_LIMITED"
PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
INTERNAL = "INTERNAL_SERVER_ERROR"


def coded(message: str, code: str, node: Any = None) -> GraphQLError:
    """A GraphQL error with `extensions.code` (and the location of `node`, if given)."""
    return GraphQLError(message, node, extensions={"code": code})


class UserError(Exception):
    """An error whose message is safe and useful to show the client; `code` becomes its `extensions.code`
    (graphql-core copies an original error's `extensions`)."""

    def __init__(self, message: str, code: str = BAD_USER_INPUT) -> None:
        super().__init__(message)
        self.extensions = {"code": code}


class ReplicaBehind(UserError):
    """A `block` argument above what the read replica has replayed (gqlapi.endpoint re-asks the primary)."""


class ReplicaConflict(UserError):
    """A hot standby cancelled the query to replay the primary's changes (gqlapi.endpoint re-asks the primary)."""

    def __init__(self) -> None:
        super().__init__("the read replica cancelled this query to replay the primary's changes (a conflict with "
                         "recovery); retry", SERVICE_BUSY)


class RequestTimeout(UserError):
    """The request's execution ran past `api.request_timeout_ms`."""

    def __init__(self, budget_ms: int) -> None:
        super().__init__(f"the request ran past its time budget ({budget_ms} ms); ask for fewer items or fields",
                         TIME_BUDGET)


def should_mask(error: GraphQLError) -> bool:
    """True for errors born from an unexpected exception (logged here, masked by MaskErrors). Every answer's
    errors pass here (both request paths): graphql-core's own request errors (variables that do not coerce) get
    their code on the way."""
    original = error.original_error
    if original is None or isinstance(original, (UserError, GraphQLError)):
        if not error.extensions:
            error.extensions = {"code": BAD_USER_INPUT if error.path is None else INTERNAL}
        return False
    log.error("unexpected error resolving %s", ".".join(str(p) for p in error.path or ()), exc_info=original)
    return True
