"""What every endpoint shares: capped body reads, content-type checks, field checks, 4xx JSON errors (credentials:
`oracle.ingress.auth`)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse


class BadRequest(Exception):
    """A client error: status + machine code + human message. Raised before anything is written."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def response(self) -> JSONResponse:
        return JSONResponse({"error": self.code, "message": self.message}, status_code=self.status)


async def read_body(request: Request, cap: int, content_type: str = "application/json") -> bytes:
    """The raw body, refused with 415 on a wrong content type and 413 past `cap` bytes (streamed, never buffered past cap)."""
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype != content_type:
        raise BadRequest(415, "unsupported_media_type", f"content-type must be {content_type}")
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > cap:
                raise BadRequest(413, "body_too_large", f"body exceeds {cap} bytes")
        except ValueError:
            raise BadRequest(400, "bad_content_length", "content-length is not a number") from None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise BadRequest(413, "body_too_large", f"body exceeds {cap} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json_object(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest(400, "malformed_json", "body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequest(400, "malformed_json", "body must be a JSON object")
    return data


def is_address(v: Any) -> bool:
    from eth_utils import is_address as _is

    return isinstance(v, str) and v.startswith("0x") and _is(v)


def is_bytes32(v: Any) -> bool:
    if not isinstance(v, str) or len(v) != 66 or not v.startswith("0x"):
        return False
    try:
        bytes.fromhex(v[2:])
    except ValueError:
        return False
    return True


def uint(v: Any, field: str, *, minimum: int = 0, bits: int = 256) -> int:
    """A non-negative integer from JSON (int or decimal string); BadRequest naming the field otherwise."""
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        raise BadRequest(422, "invalid_field", f"{field} must be an integer")
    if isinstance(v, str) and not (v.isascii() and v.isdigit() and len(v) <= 78):
        raise BadRequest(422, "invalid_field", f"{field} must be a decimal integer")
    n = int(v)
    if n < minimum or n >= 1 << bits:
        raise BadRequest(422, "invalid_field", f"{field} out of range")
    return n
