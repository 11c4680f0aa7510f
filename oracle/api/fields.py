"""Field types of the oracle's wire models: each is a check (the bounded parsers of `oracle.ingress.common`) and its
JSON Schema side by side, and the two conversions every handler goes through: `parse` (a body into its model, the
first failed check into the `BadRequest` it always was) and `reply` (an answer through its model).

A check fails with `fail(status, code, message)`: a pydantic error carrying the status and code, so the field's own
error survives pydantic's error collection. Other pydantic errors (a missing field, a wrong JSON type) take the
model's `ERROR` status and code, or the caller's (a PaymentIntent's metadata: 400 `invalid_metadata`).
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, PlainValidator, ValidationError, ValidationInfo, WithJsonSchema
from pydantic_core import PydanticCustomError
from starlette.responses import JSONResponse

from oracle.ingress.common import BadRequest, is_address, is_bytes32, parse_int

M = TypeVar("M", bound=BaseModel)


# ---- turning checks into pydantic errors and back ----------------------------------------------------------------
def fail(status: int, code: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(code, "{message}", {"message": message, "status": status})


def _err(info: ValidationInfo) -> tuple[int, str]:
    """The status and code a failed field check answers with here (set by `parse` from the model or the caller)."""
    ctx = info.context or {}
    return ctx.get("status", 422), ctx.get("code", "invalid_field")


def parse(model: type[M], data: Any, *, status: int | None = None, code: str | None = None, **context: Any) -> M:
    """`data` as a `model`, or BadRequest: the first failed check's own status/code/message, else (status, code)
    (default: the model's `ERROR`). `context` reaches the validators (e.g. the clock for timestamp windows)."""
    dstatus, dcode = getattr(model, "ERROR", (422, "invalid_field"))
    status, code = status or dstatus, code or dcode
    try:
        return model.model_validate(data, context={**context, "status": status, "code": code})
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        ctx = first.get("ctx") or {}
        if "status" in ctx:  # one of our checks: as it always answered
            raise BadRequest(ctx["status"], first["type"], ctx["message"]) from None
        where = ".".join(str(p) for p in first["loc"])
        raise BadRequest(status, code, f"{where}: {first['msg']}" if where else first["msg"]) from None


def reply(model: type[BaseModel], data: Any, status: int = 200) -> JSONResponse:
    """Answer `data` as `model` declares it (undeclared keys dropped; a missing or mistyped field is our bug: 500)."""
    return JSONResponse(model.model_validate(data).model_dump(mode="json"), status_code=status)


# ---- field types: a check (the bounded parsers) and its JSON Schema, side by side -------------------------------
def Integer(lo: int, hi: int, description: str) -> Any:  # noqa: N802 - a type factory
    """An integer in [lo, hi], as a JSON integer or a string of decimal digits (`common.parse_int`)."""
    def check(v: Any, info: ValidationInfo) -> int:
        status, code = _err(info)
        try:
            return parse_int(v, info.field_name or "value", lo=lo, hi=hi, status=status, code=code)
        except BadRequest as err:
            raise fail(err.status, err.code, err.message) from None

    number: dict[str, Any] = {"type": "integer", "minimum": lo, "maximum": hi} if hi < 2**53 else {"type": "integer", "minimum": lo}
    digits = {"type": "string", "pattern": "^-?[0-9]+$" if lo < 0 else "^[0-9]+$", "maxLength": max(len(str(lo)), len(str(hi)))}
    bound = f"; at most 2^{hi.bit_length()} - 1" if hi >= 2**53 else ""
    return Annotated[int, PlainValidator(check), WithJsonSchema({
        "description": f"{description} (a JSON integer or a decimal string{bound})", "oneOf": [number, digits]})]


def UInt(description: str, lo: int = 0, bits: int = 256) -> Any:  # noqa: N802 - a type factory
    return Integer(lo, 2**bits - 1, description)


def _pattern(regex: str, message: str, description: str, *, lower: bool = False, extra: Any = None,
             **schema: Any) -> Any:
    """A string matching `regex` (whole), checked by `extra(v)` too when given."""
    compiled = re.compile(regex)

    def check(v: Any, info: ValidationInfo) -> str:
        if not isinstance(v, str) or not compiled.fullmatch(v) or (extra is not None and not extra(v)):
            status, code = _err(info)
            raise fail(status, code, f"{info.field_name} {message}")
        return v.lower() if lower else v

    return Annotated[str, PlainValidator(check), WithJsonSchema({
        "type": "string", "pattern": f"^{regex}$", **schema, "description": description})]


Address = _pattern("0x[0-9a-fA-F]{40}", "must be a 0x address", "a 0x address (EIP-55 checksum checked when mixed-case)",
                   extra=is_address)
Account = _pattern("0x(?:[0-9a-fA-F]{40}|[0-9a-fA-F]{64})", "must be a 0x account: 20 bytes (EVM) or 32 bytes (Aptos)",
                   "the chain's account: a 0x address of 20 bytes on EVM chains (EIP-55 checksum checked when "
                   "mixed-case) or 32 bytes as 0x + 64 hex digits on Aptos (the long form, leading zeros kept); it must "
                   "be of the form the oracle's chain uses", extra=lambda v: len(v) == 66 or is_address(v))
Bytes32 = _pattern("0x[0-9a-fA-F]{64}", "must be 0x + 64 hex", "32 bytes as 0x + 64 hex digits", lower=True,
                   extra=is_bytes32)
Phone = _pattern("[0-9]{9,15}", "must be digits in international form", "the payer's phone number, international form "
                 "without '+' (e.g. 2547XXXXXXXX); sent to Daraja, never stored or logged")
DeviceId = _pattern("[A-Za-z0-9_-]{0,63}[A-Za-z0-9][A-Za-z0-9_-]{0,63}", "must be 1-64 letters, digits, - or _",
                    "the device's id (a key of oracle.iot_device_keys): 1-64 ASCII letters, digits, - or _",
                    extra=lambda v: len(v) <= 64, maxLength=64)


def finite(v: Any, field: str) -> float | int:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and not math.isfinite(v)):
        raise fail(422, "invalid_field", f"{field} must be a finite number")
    return v
