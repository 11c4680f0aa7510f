"""POST /graphql for valid queries without strawberry's HTTP view: prepared documents, direct execution.

Measured (bench/api.py, graphql/README.md): strawberry's ASGI view and its per-request extension runners cost
more CPU than executing a small query (~0.7 ms and ~0.35 ms of a 2.2 ms marketStats request). Frontends send
the same few documents over and over, so this endpoint keeps an LRU of *prepared* documents — admitted by the schema's
Guard (gqlapi.guard: token limit, expanded-size limits, validation, judged off the event loop), their single
query operation picked — and executes a prepared one with graphql-core directly, with the same executor
class, the same error masking (`should_mask`) and the same response shape as the strawberry path.

Anything else goes to the strawberry view unchanged, which therefore still owns every error response a client
can provoke before execution: GET (GraphiQL, queries via GET), other content types, unparsable or non-object
JSON, a missing query, syntax or validation errors, an unknown or ambiguous operation name, mutations,
subscriptions, batched requests; except the guard's answers that say only that it has no verdict yet
(TIME_BUDGET_EXCEEDED, SERVICE_BUSY), which are answered here in strawberry's shape, so that a request does not
wait for the same judgement twice. tests/integration/test_api_endpoint.py compares both paths on the same requests.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import OrderedDict
from typing import Any

import orjson
from graphql import DocumentNode, GraphQLError, OperationDefinitionNode, OperationType, execute
from strawberry.execution.is_awaitable import optimized_is_awaitable
from strawberry.utils.await_maybe import await_maybe

from gqlapi.answers import Answers, Probe, classify
from gqlapi.costs import variable_errors
from gqlapi.db import NeedsSnapshot
from gqlapi.errors import PAYLOAD_TOO_LARGE, ReplicaBehind, ReplicaConflict, should_mask
from gqlapi.guard import Admitted

_HEADERS = [(b"content-type", b"application/json")]
_TOO_LARGE = orjson.dumps({"errors": [{"message": "request body too large", "extensions": {"code": PAYLOAD_TOO_LARGE}}]})
_UNEXPECTED = orjson.dumps({"data": None, "errors": [{"message": "Unexpected error."}]})
log = logging.getLogger("gqlapi")
_SERIALS = itertools.count()


class NoVerdict(Exception):
    """The guard's answer when it has no verdict on a document yet (TIME_BUDGET_EXCEEDED, SERVICE_BUSY)."""

    def __init__(self, admitted: Admitted) -> None:
        super().__init__(admitted.errors[0].message)
        self.admitted = admitted


class Prepared:
    """A document known to parse and validate, with the operation a request names, whether its requests
    have so far run at most one SQL statement (then they need no snapshot transaction; see gqlapi.db), and whether
    its answers may be kept (gqlapi.answers)."""

    __slots__ = ("document", "operation_name", "single", "cacheable", "serial")

    def __init__(self, document: DocumentNode, operation_name: str | None, cacheable: bool = False) -> None:
        self.document, self.operation_name = document, operation_name
        self.single: bool | None = None  # None: not run yet
        self.cacheable = cacheable
        # Kept answers name their document by this number, not by the object: an answer must not keep a document
        # the LRU dropped alive (its memory is not in the answers' byte budget).
        self.serial = next(_SERIALS)


class GraphQLEndpoint:
    """ASGI app for /graphql: prepared queries executed here, everything else by `fallback` (strawberry's view).

    `make_context(single, primary)` returns the per-request Context (`single`: see Prepared; `primary`: read the
    primary, not a replica); its `db` session is closed after execution, as the schema's CloseSession extension does
    on the strawberry path."""

    def __init__(self, schema: Any, fallback: Any, make_context: Any, *, max_body_bytes: int, cache_size: int = 512,
                 answer_bytes: int = 0, probe_timeout_s: float = 15.0) -> None:
        self.schema, self.fallback, self.make_context = schema, fallback, make_context
        self.max_body_bytes = max_body_bytes
        self.cache_size = cache_size
        self.answers = Answers(answer_bytes) if answer_bytes > 0 else None
        self.probe = Probe(self._probe_once)
        self.probe_timeout_s = probe_timeout_s  # a shared read's bound: one at a time, so a stuck one holds all lookups
        self.guard = schema.carbon_guard
        self.executor_class = schema.execution_context_class
        self.prepared: OrderedDict[tuple[str, str | None], Prepared | None] = OrderedDict()

    # -- preparing -------------------------------------------------------------------------------------------
    async def prepare(self, query: str, operation_name: str | None, scope: Any = None) -> Prepared | None:
        """The prepared document, or None when the strawberry path must answer (any error before execution);
        NoVerdict when the guard has none yet (time budget, busy), which this path answers itself (strawberry's view
        would wait for the same judgement again). `scope`: the request's, naming the client a new document's
        judging counts against."""
        key = (query, operation_name)
        cache = self.prepared
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
        admitted = await self.guard.admit(query, scope)  # judged off the event loop, kept for the strawberry path too
        if not admitted.final:
            raise NoVerdict(admitted)
        if admitted.errors:  # refusals stay out of this LRU (the guard keeps them small): they cannot evict documents
            return None
        prepared = self._prepare(admitted.document, operation_name, self.schema._schema if self.answers else None)
        cache[key] = prepared  # None too: an admitted document whose operation this path does not run
        if len(cache) > self.cache_size:
            cache.popitem(last=False)
        return prepared

    @staticmethod
    def _prepare(document: DocumentNode, operation_name: str | None, schema: Any = None) -> Prepared | None:
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        if operation_name is None:
            chosen = operations if len(operations) == 1 else []
        else:
            chosen = [d for d in operations if d.name is not None and d.name.value == operation_name]
        if len(chosen) != 1 or chosen[0].operation is not OperationType.QUERY:
            return None
        return Prepared(document, operation_name, schema is not None and classify(schema, document, chosen[0]))

    # -- serving ---------------------------------------------------------------------------------------------
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.fallback(scope, receive, send)
            return
        body = bytearray()  # every POST body is capped, whichever path then answers it
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body_bytes:
                await self._respond(send, 413, _TOO_LARGE)
                return
        request = self._request(bytes(body)) if self._json_request(scope["headers"]) else None
        try:  # (an exception, not a returned value: the hot path tests nothing for it)
            prepared = None if request is None else await self.prepare(request[0], request[2], scope)
        except NoVerdict as no:  # answered as strawberry answers an error raised while parsing
            errors = [e.formatted for e in no.admitted.errors]
            await self._respond(send, 200, orjson.dumps({"data": None, "errors": errors}))
            return
        if prepared is None or variable_errors(request[1]):  # type: ignore[index]
            await self.fallback(scope, _replay(bytes(body), receive), send)
            return
        try:
            answer = await self.run(prepared, request[1])  # type: ignore[index]
        except Exception:  # noqa: BLE001 - an answer, never a bare 500 (graphql-core returns errors, it should not raise)
            log.exception("unexpected error executing a prepared document")
            answer = _UNEXPECTED
        await self._respond(send, 200, answer)

    @staticmethod
    def _json_request(headers: list[tuple[bytes, bytes]]) -> bool:
        """application/json in, and a client that accepts plain JSON back (else strawberry negotiates)."""
        content_type = accept = b""
        for name, value in headers:
            if name == b"content-type":
                content_type = value
            elif name == b"accept":
                accept = value
        if not content_type.split(b";", 1)[0].strip().lower() == b"application/json":
            return False
        return not accept or b"application/json" in accept or accept.strip() == b"*/*"

    @staticmethod
    def _request(body: bytes) -> tuple[str, dict[str, Any] | None, str | None] | None:
        """(query, variables, operationName) of a well-formed single request, else None (strawberry answers)."""
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(data, dict):
            return None
        query, variables, name = data.get("query"), data.get("variables"), data.get("operationName")
        if not isinstance(query, str) or not (variables is None or isinstance(variables, dict)) \
                or not (name is None or isinstance(name, str)) or data.get("extensions") is not None:
            return None
        return query, variables, name

    async def run(self, prepared: Prepared, variables: dict[str, Any] | None) -> bytes:
        """Execute a prepared document; the response body (data and masked errors).

        A document seen to run one statement is run without a snapshot transaction; if a request of it then asks
        for a second statement (data-dependent nesting), that attempt is dropped unseen and the request re-run
        with a snapshot, which the document keeps from then on. A request that named a block its read replica has
        not replayed yet, or that the replica cancelled (conflict with recovery), is re-run on the primary: nothing
        of the first attempt was sent. A cacheable document (gqlapi.answers) first reads the database's state: the
        answer kept for that state is sent as it is, else the document runs in a snapshot that reads the state again
        as its first statement, and its answer is kept under that."""
        result = None
        if self.answers is not None and prepared.cacheable:
            key = Answers.key(prepared.serial, variables)
            result = None if key is None else await self._cached(prepared, variables, key)
            if isinstance(result, bytes):
                return result
        if result is None:
            single = prepared.single is True
            result, statements = await self._execute(prepared, variables, single)
            if single and result.errors and any(isinstance(e.original_error, NeedsSnapshot) for e in result.errors):
                prepared.single = False
                result, statements = await self._execute(prepared, variables, False)
            elif prepared.single is None:
                prepared.single = statements <= 1
        if result.errors and any(isinstance(e.original_error, (ReplicaBehind, ReplicaConflict)) for e in result.errors):
            result, _ = await self._execute(prepared, variables, prepared.single is True, primary=True)
        out: dict[str, Any] = {"data": result.data}
        if result.errors:
            out["errors"] = [_masked(e).formatted for e in result.errors]
        return orjson.dumps(out)

    async def _cached(self, prepared: Prepared, variables: dict[str, Any] | None, key: tuple) -> Any:
        """The kept answer's body, or the execution result in the probed snapshot (kept when it has no errors, for as
        long as its resolvers said it holds); None when the state could not be read (the request then runs as any
        other, which reports why)."""
        answers = self.answers
        assert answers is not None
        # The lookup reads the state in one statement outside a transaction (no snapshot to end afterwards), shared with
        # the requests that wait for the same read (answers.Probe); a miss reads it again as the first statement of the
        # snapshot it executes in, and keeps the answer under that.
        # (On replicas the two may be different servers: the key is the state itself, the same on any server.)
        read = await self.probe.read()
        if read is None:
            return None
        body = answers.get(key, *read)
        if body is not None:
            return body
        context = self.make_context(False)
        context.keeping = True
        read = await self._state(context, close=False)
        if read is None:
            return None
        state, second = read
        result, _ = await self._execute(prepared, variables, False, context=context)
        if not result.errors and (context.valid_until is None or context.valid_until > second):
            body = orjson.dumps({"data": result.data})
            answers.put(key, state, context.valid_until, body)
            return body
        return result

    async def _probe_once(self) -> tuple[tuple, int] | None:
        """One read of the state for the lookups that share it (a session of its own, closed after); None after
        `probe_timeout_s` (a server that stopped answering mid-read): its waiters run uncached, which reports the
        trouble, and the next read starts."""
        try:
            return await asyncio.wait_for(self._state(self.make_context(True), close=True), self.probe_timeout_s)
        except TimeoutError:
            log.warning("the answer cache's state read timed out; requests run uncached",
                        extra={"timeout_s": self.probe_timeout_s})
            return None

    async def _state(self, context: Any, *, close: bool) -> tuple[tuple, int] | None:
        """The database's state and clock second read on `context`'s session (closed after when `close`, or when the
        read fails); None when it could not be read: the uncached path meets the same problem and answers it."""
        try:
            return await Answers.state(context.db)
        except Exception:  # noqa: BLE001
            close = True
            return None
        finally:
            if close:
                await context.db.close()

    async def _execute(self, prepared: Prepared, variables: dict[str, Any] | None, single: bool,
                       primary: bool = False, context: Any = None) -> tuple[Any, int]:
        if context is None:
            context = self.make_context(single, primary) if primary else self.make_context(single)
        try:
            result = await await_maybe(execute(
                self.schema._schema, prepared.document, None, context, variables, prepared.operation_name,
                executor_class=self.executor_class, is_awaitable=optimized_is_awaitable, operation_extensions=None,
            ))
        finally:
            await context.db.close()
        return result, context.db.statements

    @staticmethod
    async def _respond(send: Any, status: int, body: bytes) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [*_HEADERS, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def _masked(error: GraphQLError) -> GraphQLError:
    """What strawberry's MaskErrors(should_mask_error=should_mask) makes of an error."""
    if not should_mask(error):
        return error
    return GraphQLError("Unexpected error.", nodes=error.nodes, source=error.source, positions=error.positions,
                        path=error.path)


def _replay(body: bytes, receive: Any) -> Any:
    """A receive() that hands the already-read body to the fallback app, then the connection's own messages."""
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
