"""What every endpoint shares: capped body reads, content-type checks, field checks, 4xx JSON errors (credentials:
`oracle.ingress.auth`), and the strict bounded parsers every number from the wire goes through (`parse_int`,
`parse_amount`)."""

from __future__ import annotations

import math
import re
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
    if declared is not None and parse_int(declared, "content-length", hi=2**63 - 1, status=400,
                                          code="bad_content_length") > cap:
        raise BadRequest(413, "body_too_large", f"body exceeds {cap} bytes")
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


_BYTES32 = re.compile(r"0x[0-9a-fA-F]{64}")


def is_bytes32(v: Any) -> bool:
    """Exactly "0x" + 64 hex digits (not bytes.fromhex, which skips whitespace between bytes)."""
    return isinstance(v, str) and _BYTES32.fullmatch(v) is not None


UINT256_MAX = 2**256 - 1
_INT = re.compile(r"-?[0-9]+")
_DECIMAL = re.compile(r"([0-9]+)(?:\.([0-9]+))?")


def parse_int(v: Any, field: str, *, lo: int = 0, hi: int = UINT256_MAX, status: int = 422,
              code: str = "invalid_field") -> int:
    """A strict, bounded integer from a wire payload: a JSON integer (not a bool, not a float) or a string of ASCII
    decimal digits with an optional leading '-', with lo <= n <= hi; BadRequest(status, code) naming the field
    otherwise. A string's length is capped (by the digits of lo/hi) *before* it is converted: int() of a long digit
    string is quadratic and Python refuses more than 4,300 digits, so no input may reach it uncapped."""
    if isinstance(v, bool):
        raise BadRequest(status, code, f"{field} must be an integer")
    if isinstance(v, str):
        if len(v) > max(len(str(lo)), len(str(hi))) or not _INT.fullmatch(v):
            raise BadRequest(status, code, f"{field} must be a decimal integer in [{lo}, {hi}]")
        v = int(v)
    elif not isinstance(v, int):
        raise BadRequest(status, code, f"{field} must be an integer")
    if not lo <= v <= hi:
        raise BadRequest(status, code, f"{field} out of range [{lo}, {hi}]")
    return v


def parse_amount(v: Any, field: str, *, decimals: int, hi: int = 10**15, status: int = 400,
                 code: str = "invalid_field") -> int:
    """A non-negative money amount as an exact integer of minor units (x 10**decimals), at most `hi` of them: a JSON
    integer, a JSON number with no more than `decimals` significant fraction digits (1.0, 12.5), or the same as a
    decimal string ("1500", "1500.00"). Exponents, signs, NaN and infinities are refused; the text is length-capped
    before any conversion. A float is read through its shortest repr, so 1.1 is 1.10, never 1.1000000000000000888."""
    if isinstance(v, bool):
        raise BadRequest(status, code, f"{field} must be a number")
    if isinstance(v, int):
        if not 0 <= v <= hi // 10**decimals:
            raise BadRequest(status, code, f"{field} out of range")
        return v * 10**decimals
    if isinstance(v, float):
        if not math.isfinite(v):
            raise BadRequest(status, code, f"{field} must be a finite number")
        v = repr(v)
    if not isinstance(v, str):
        raise BadRequest(status, code, f"{field} must be a number")
    m = _DECIMAL.fullmatch(v) if len(v) <= len(str(hi)) + decimals + 2 else None
    if m is None:
        raise BadRequest(status, code, f"{field} must be a plain decimal number (digits, optional fraction)")
    whole, frac = m.group(1), (m.group(2) or "").rstrip("0")
    if len(frac) > decimals:
        raise BadRequest(status, code, f"{field} has more than {decimals} decimals")
    n = int(whole) * 10**decimals + int(frac.ljust(decimals, "0") or "0")
    if n > hi:
        raise BadRequest(status, code, f"{field} out of range")
    return n


def uint(v: Any, field: str, *, minimum: int = 0, bits: int = 256) -> int:
    """A non-negative integer from JSON (int or decimal string); BadRequest(422) naming the field otherwise."""
    return parse_int(v, field, lo=minimum, hi=2**bits - 1)
