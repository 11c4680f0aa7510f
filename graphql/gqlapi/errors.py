"""Errors a client may see, and the rule that masks everything else.

A `UserError` carries a message written for the client (a bad argument, a page too large, a timeout); any other
exception raised while resolving is logged and replaced by "Unexpected error." so no SQL, stack trace or
internal detail reaches a response. Parse and validation errors from graphql-core have no original error and
pass through unchanged: they already speak GraphQL.
"""

from __future__ import annotations

import logging

from graphql.error import GraphQLError

log = logging.getLogger("gqlapi")


class UserError(Exception):
    """An error whose message is safe and useful to show the client."""


def should_mask(error: GraphQLError) -> bool:
    """True for errors born from an unexpected exception (logged here, masked by MaskErrors)."""
    original = error.original_error
    if original is None or isinstance(original, (UserError, GraphQLError)):
        return False
    log.error("unexpected error resolving %s", ".".join(str(p) for p in error.path or ()), exc_info=original)
    return True
