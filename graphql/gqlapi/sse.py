"""GET/POST /graphql/stream: the live subscriptions as Server-Sent Events, for clients without WebSockets.

One subscription per request (graphql-sse's "distinct connections" mode): `query`, `variables` (JSON) and
`operationName` as query parameters (GET, what EventSource can send) or a JSON body (POST). Each result is an
`event: next` whose data is the GraphQL result JSON; the stream ends with `event: complete`, or with `event: error`
naming why the server ended it (slow consumer, listener lost: resume with `since`). A document the schema's guard
refuses (syntax, limits, validation) is a plain JSON 400; errors once the operation runs (bad arguments, limits on
subscriptions) are an `event: next` carrying `errors`, then `complete`.
"""

from __future__ import annotations

import hmac
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse

from gqlapi.errors import should_mask


def _bad(status: int, message: str, code: str = "BAD_USER_INPUT") -> JSONResponse:
    return JSONResponse({"errors": [{"message": message, "extensions": {"code": code}}]}, status_code=status)


def _formatted(result: Any) -> bytes:
    out: dict[str, Any] = {"data": result.data}
    if result.errors:
        out["errors"] = [({"message": "Unexpected error."} if should_mask(e) else e.formatted) for e in result.errors]
    return orjson.dumps(out)


def sse_route(schema: Any, make_context: Any, *, max_body_bytes: int, token: str | None) -> Any:
    """The Starlette endpoint; `make_context(request)` builds the operation's Context."""

    async def stream(request: Request) -> Any:
        if token is not None:
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return _bad(401, "live updates need `Authorization: Bearer <api.live_token>`", "UNAUTHENTICATED")
        if request.method == "POST":
            body = await request.body()
            if len(body) > max_body_bytes:
                return _bad(413, "request body too large", "PAYLOAD_TOO_LARGE")
            try:
                data = orjson.loads(body)
            except orjson.JSONDecodeError:
                return _bad(400, "the body is not JSON")
        else:
            data = dict(request.query_params)
            if isinstance(data.get("variables"), str):
                try:
                    data["variables"] = orjson.loads(data["variables"])
                except orjson.JSONDecodeError:
                    return _bad(400, "`variables` is not JSON")
        if not isinstance(data, dict) or not isinstance(data.get("query"), str) \
                or not isinstance(data.get("variables") or {}, dict) \
                or not isinstance(data.get("operationName") or "", str):
            return _bad(400, "send `query` (a subscription), and optionally `variables` (an object) and `operationName`")
        admitted = await schema.carbon_guard.admit(data["query"], request.scope)  # parse, limits, validation
        if admitted.errors:
            return JSONResponse({"errors": [e.formatted for e in admitted.errors]}, status_code=400)
        context = make_context(request)
        result = await schema.subscribe(data["query"], variable_values=data.get("variables"), context_value=context,
                                        operation_name=data.get("operationName"))
        if not hasattr(result, "__anext__"):  # refused before it started
            return JSONResponse(orjson.loads(_formatted(result)), status_code=400)

        async def events() -> Any:
            try:
                async for item in result:
                    yield b"event: next\ndata: " + _formatted(item) + b"\n\n"
                ended = getattr(context, "live_closed", None)
                if ended is not None:
                    yield b"event: error\ndata: " + orjson.dumps({"code": ended.code, "reason": ended.reason}) + b"\n\n"
                else:
                    yield b"event: complete\ndata: \n\n"
            finally:
                await result.aclose()

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"cache-control": "no-cache", "x-accel-buffering": "no"})

    return stream

