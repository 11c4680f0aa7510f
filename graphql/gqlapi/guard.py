"""Admission of GraphQL documents: size, parse with a token limit, cost limits in linear time (gqlapi.costs:
what a document stands for once its fragments are expanded), then validation, its field-merging rule held to a
small work budget (`api.max_merge_checks`). Errors carry `extensions.code`.

Before any of it, a document longer than `api.max_query_bytes` (comments and whitespace count: 1 MB of long
comments has few tokens but took 0.26 s to lex) is refused without being parsed. The rest runs in one worker
thread, so no document holds the event loop, and a request waits for its verdict at most a time budget. That
thread is shared by all clients, so its queue is bounded twice: `api.admission_queue` documents judged or waiting
in all, `api.admission_per_client` per client (counted until the judgement ends, even if its request stopped
waiting); past either a new document is refused at once with SERVICE_BUSY, and documents judged before are
answered from the caches as ever. One client flooding new documents therefore delays another's by at most its own
few judgements (tests/unit/test_gql_guard.py, tests/integration/test_api_admission.py).

Verdicts are kept per process, shared by the lean endpoint and strawberry's view (the `Admission` extension), so a
document is judged once, not once per path or per request: admitted documents in an LRU keyed by their text (the
parsed document holds its text anyway); refusals in a larger LRU keyed by a digest of the text, holding only their
errors and the operations' names and kinds (what strawberry needs to answer them as before), not the text.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    NameNode,
    OperationDefinitionNode,
    SelectionSetNode,
    parse,
    specified_rules,
)
from graphql.validation import OverlappingFieldsCanBeMergedRule
from graphql.validation.validate import ValidationAbortedError
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document

from core.ratelimit import Network, client_from_scope
from gqlapi import errors as codes
from gqlapi.costs import DocumentLimits, check_costs, text_errors, variable_errors
from gqlapi.errors import coded

log = logging.getLogger("gqlapi")


class Admitted(NamedTuple):
    """A parsed document (None when it did not parse) and its errors ([] when it may be executed); `final` is
    False for the answers that are not a verdict on the document (time budget, busy, an unexpected error): the
    same document may pass later, so they are not kept."""

    document: DocumentNode | None
    errors: list[GraphQLError]
    final: bool = True


class _BudgetedOverlappingFields(OverlappingFieldsCanBeMergedRule):
    """graphql-core's field-merging rule with a smaller work budget than its default (500,000 units, 1-2 s here):
    it compares same-named fields and fragments pairwise, so a document within the other limits can still ask for
    hundreds of thousands of comparisons. Over budget, validation stops with ValidationAbortedError."""

    budget = 10_000

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self.rule_context.remaining_complexity_budget = self.budget


class Guard:
    """Parses, limits and validates documents for one schema; remembers the verdicts (see the module docstring).

    Judging a new document (parse, limits, validation: ~0.1 s of CPU for a 2,000-token document on the reference
    box) runs in one worker thread, so the event loop keeps answering other requests meanwhile; a request waits for
    it at most `time_budget` seconds, then gets a TIME_BUDGET_EXCEEDED error (the judgement goes on and its verdict
    is kept). At most `queue_size` documents are judged or waiting, at most `per_client` of one client's."""

    def __init__(self, schema: GraphQLSchema, limits: DocumentLimits, *, time_budget: float = 1.0,
                 cache_size: int = 1024, refusal_cache_size: int = 4096, queue_size: int = 16, per_client: int = 4,
                 trusted_proxies: Sequence[Network] = ()) -> None:
        self.schema, self.limits, self.time_budget = schema, limits, time_budget
        self.cache_size, self.refusal_cache_size = cache_size, refusal_cache_size
        self.queue_size, self.per_client, self.trusted_proxies = queue_size, per_client, tuple(trusted_proxies)
        rule = type("OverlappingFieldsCanBeMergedRule", (_BudgetedOverlappingFields,), {"budget": limits.merge_budget})
        self.rules = tuple(rule if r is OverlappingFieldsCanBeMergedRule else r for r in specified_rules)
        self._cache: OrderedDict[str, Admitted] = OrderedDict()  # admitted documents, by text
        self._refused: OrderedDict[bytes, Admitted] = OrderedDict()  # refusals, by digest, without their text
        self._judging: dict[bytes, asyncio.Future] = {}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gqlapi-admission")
        # Judgements in the pool, in all and per client; released by the worker thread when a judgement ends (not
        # by a callback on the event loop, which never runs if that loop is gone), hence the lock.
        self._lock = threading.Lock()
        self._pending = 0
        self._per_client: dict[str, int] = {}

    @property
    def pending(self) -> int:
        """Documents being judged or waiting to be."""
        return self._pending

    def cached(self, query: str) -> Admitted | None:
        """The verdict on `query` if it was judged before (no judging otherwise)."""
        hit = self._cache.get(query)
        if hit is not None:
            self._cache.move_to_end(query)
            return hit
        key = _digest(query)
        hit = self._refused.get(key)
        if hit is not None:
            self._refused.move_to_end(key)
        return hit

    async def admit(self, query: str, scope: Mapping[str, Any] | None = None) -> Admitted:
        """The parsed document and its errors (size, parse, limits, validation), judged off the event loop once;
        `scope` (the ASGI request's) names the client the judging is counted against."""
        hit = self._cache.get(query)
        if hit is not None:
            self._cache.move_to_end(query)
            return hit
        too_large = self.too_large(query)
        if too_large is not None:
            return too_large
        key = _digest(query)
        hit = self._refused.get(key)
        if hit is not None:
            self._refused.move_to_end(key)
            return hit
        loop = asyncio.get_running_loop()
        pending = self._judging.get(key)
        if pending is None or pending.get_loop() is not loop:  # identical documents arriving together: judged once
            client = "unknown" if scope is None else client_from_scope(scope, self.trusted_proxies)
            busy = self._reserve(client)
            if busy is not None:
                return busy
            try:
                pending = loop.run_in_executor(self._pool, self._run, query, client)
            except BaseException:
                self._release(client)
                raise
            self._judging[key] = pending
            pending.add_done_callback(functools.partial(self._settle, query, key))
        try:
            return await asyncio.wait_for(asyncio.shield(pending), self.time_budget)
        except asyncio.TimeoutError:
            return Admitted(None, [coded(
                f"Checking this document took longer than the time budget ({self.time_budget * 1000:.0f} ms); "
                "send a smaller document", codes.TIME_BUDGET)], final=False)

    def too_large(self, query: str) -> Admitted | None:
        """The refusal of a document over `max_query_bytes` (UTF-8), else None; costs no parsing."""
        limit, n = self.limits.max_query_bytes, len(query)
        if n <= limit // 4 or (n <= limit and (query.isascii() or len(query.encode("utf-8", "surrogatepass")) <= limit)):
            return None
        return Admitted(None, [coded(f"The document is longer than {limit} bytes (comments and whitespace count); "
                                      "send a shorter one", codes.MAX_QUERY_BYTES)])

    def _reserve(self, client: str) -> Admitted | None:
        """Count one judgement for `client`, or the SERVICE_BUSY answer when its share or the queue is full."""
        with self._lock:
            mine = self._per_client.get(client, 0)
            if mine >= self.per_client:
                return Admitted(None, [coded(
                    f"This client already has {mine} new documents being checked; send more once they are answered "
                    "(documents checked before are answered at once)", codes.SERVICE_BUSY)], final=False)
            if self._pending >= self.queue_size:
                return Admitted(None, [coded(
                    "The API is checking too many new documents right now; retry shortly (documents it has checked "
                    "before are answered at once)", codes.SERVICE_BUSY)], final=False)
            self._pending += 1
            self._per_client[client] = mine + 1
        return None

    def _release(self, client: str) -> None:
        with self._lock:
            self._pending -= 1
            left = self._per_client[client] - 1
            if left:
                self._per_client[client] = left
            else:
                del self._per_client[client]

    def _run(self, query: str, client: str) -> Admitted:
        try:
            return self.judge(query)
        finally:
            self._release(client)

    def _settle(self, query: str, key: bytes, future: asyncio.Future) -> None:
        if self._judging.get(key) is future:
            del self._judging[key]
        if future.cancelled() or future.exception() is not None:
            return
        verdict = future.result()
        if not verdict.final:
            return
        if verdict.errors:
            self._refused[key] = _compact(verdict)
            if len(self._refused) > self.refusal_cache_size:
                self._refused.popitem(last=False)
        else:
            self._cache[query] = verdict
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)

    def judge(self, query: str) -> Admitted:
        """Size, parse, check limits, validate (synchronously, uncached); never raises."""
        try:
            return self.too_large(query) or self._judge(query)
        except Exception:  # noqa: BLE001 - an answer for the client; the cause for the log
            log.exception("unexpected error admitting a document")
            return Admitted(None, [coded("Unexpected error.", codes.INTERNAL)], final=False)  # not a verdict to keep

    def _judge(self, query: str) -> Admitted:
        try:
            document = parse(query, max_tokens=self.limits.max_tokens)
        except GraphQLError as e:
            # graphql-core words the token limit as a syntax error; it is a limit (a clear code for clients)
            code = codes.MAX_TOKENS if "tokens. Parsing aborted" in e.message else codes.PARSE_FAILED
            return Admitted(None, [GraphQLError(e.message, source=e.source, positions=e.positions,
                                                extensions={"code": code})])
        errors = check_costs(document, self.limits) or text_errors(document)
        if not errors:
            errors = [_coded(e) for e in validate_document(self.schema, document, self.rules)]
        return Admitted(document, errors)


def _digest(query: str) -> bytes:
    return hashlib.blake2b(query.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _compact(verdict: Admitted) -> Admitted:
    """A refusal without its text: errors keep message, locations and code (all a response shows), not the nodes
    or source they point into; the document keeps only its operations' kinds and names, which strawberry reads to
    choose the operation before it reports the errors."""
    for e in verdict.errors:
        e.nodes = e.source = e.positions = None
    if verdict.document is None:
        return verdict
    operations = tuple(
        OperationDefinitionNode(operation=d.operation, name=None if d.name is None else NameNode(value=d.name.value),
                                variable_definitions=(), directives=(), selection_set=SelectionSetNode(selections=()))
        for d in verdict.document.definitions if isinstance(d, OperationDefinitionNode))
    return Admitted(DocumentNode(definitions=operations), verdict.errors)


def _coded(error: GraphQLError) -> GraphQLError:
    """graphql-core's validation errors with a code; its abort (budget or error count) with a clearer message."""
    if isinstance(error, ValidationAbortedError) and error.message == "Validation aborted.":
        return GraphQLError("The document repeats fields or fragments too often to be checked within the "
                            "validation budget; select each field once per selection set",
                            extensions={"code": codes.QUERY_TOO_COMPLEX})
    if not error.extensions:
        error.extensions = {"code": codes.VALIDATION_FAILED}
    return error


class Admission(SchemaExtension):
    """Strawberry's parse and validate steps through a Guard (replaces MaxTokensLimiter, ParserCache,
    ValidationCache and the depth and alias limiters), plus the variables check."""

    def __init__(self, guard: Guard) -> None:
        super().__init__()
        self.guard = guard
        self.errors: list[GraphQLError] = []

    async def on_parse(self) -> Any:  # type: ignore[override]
        ec = self.execution_context
        request = getattr(ec.context, "request", None)
        admitted = await self.guard.admit(ec.query or "", getattr(request, "scope", None))
        if admitted.document is None:
            raise admitted.errors[0]
        ec.graphql_document = admitted.document
        self.errors = admitted.errors
        yield

    def on_validate(self) -> Any:
        ec = self.execution_context
        ec.pre_execution_errors = list(self.errors) or variable_errors(ec.variables)
        yield
