"""Move values as the fullnode's JSON renders them, parsed exactly by their Move type.

u8/u16/u32 are JSON numbers; u64/u128/u256 are decimal strings (never floats); addresses are 0x-hex of up to 64
digits, normalised here to 0x + 64 lowercase digits; vector<u8> is 0x-hex; other vectors are JSON arrays;
0x1::string::String is a string; 0x1::option::Option<T> is {"vec": []} or {"vec": [v]}; 0x1::object::Object<T>
is {"inner": address}. Anything else raises MoveValueError (the reader records it as an indexing error).
Parsers are bounded: a string longer than MAX_STRING or a vector longer than MAX_VECTOR is refused.
"""

from __future__ import annotations

import re
from typing import Any

MAX_STRING = 4096
MAX_VECTOR = 1024
_UINT_BITS = {"u8": 8, "u16": 16, "u32": 32, "u64": 64, "u128": 128, "u256": 256}
_NUMBER_TYPES = ("u8", "u16", "u32")  # rendered as JSON numbers; the wider ones as strings
_HEX = re.compile(r"0x[0-9a-fA-F]*\Z")
_DIGITS = re.compile(r"(0|[1-9][0-9]{0,77})\Z")


class MoveValueError(ValueError):
    """A Move value that does not match its declared type."""


def _short(v: Any) -> str:
    return repr(v)[:80]


def address(v: Any) -> str:
    """0x + 64 lowercase hex digits (the API shortens special addresses: "0x1")."""
    if not isinstance(v, str) or not _HEX.match(v) or not 3 <= len(v) <= 66:
        raise MoveValueError(f"not an address: {_short(v)}")
    return "0x" + v[2:].lower().rjust(64, "0")


def uint(kind: str, v: Any) -> int:
    bits = _UINT_BITS[kind]
    if kind in _NUMBER_TYPES:
        if type(v) is not int:
            raise MoveValueError(f"{kind} is not a JSON integer: {_short(v)}")
        n = v
    else:
        if not isinstance(v, str) or not _DIGITS.match(v):
            raise MoveValueError(f"{kind} is not a decimal string: {_short(v)}")
        n = int(v)
    if not 0 <= n < 1 << bits:
        raise MoveValueError(f"{kind} out of range: {_short(v)}")
    return n


def _split_generic(t: str) -> tuple[str, str | None]:
    if t.endswith(">") and "<" in t:
        head, _, inner = t.partition("<")
        return head, inner[:-1]
    return t, None


def parse(move_type: str, v: Any) -> Any:
    """The Python value of `v` as Move type `move_type` (ints as int, addresses and bytes as lowercase 0x-hex)."""
    t = move_type.strip()
    if t in _UINT_BITS:
        return uint(t, v)
    if t == "bool":
        if type(v) is not bool:
            raise MoveValueError(f"not a bool: {_short(v)}")
        return v
    if t == "address":
        return address(v)
    if t == "0x1::string::String":
        if not isinstance(v, str) or len(v) > MAX_STRING:
            raise MoveValueError(f"not a string (at most {MAX_STRING} characters): {_short(v)}")
        return v
    head, inner = _split_generic(t)
    if head == "vector" and inner is not None:
        if inner == "u8":
            if not isinstance(v, str) or not _HEX.match(v) or len(v) % 2 or len(v) > 2 + 2 * MAX_STRING:
                raise MoveValueError(f"vector<u8> is not even-length 0x-hex: {_short(v)}")
            return v.lower()
        if not isinstance(v, list) or len(v) > MAX_VECTOR:
            raise MoveValueError(f"not a vector (at most {MAX_VECTOR} items): {_short(v)}")
        return [parse(inner, x) for x in v]
    if head == "0x1::option::Option" and inner is not None:
        if not isinstance(v, dict) or set(v) != {"vec"} or not isinstance(v["vec"], list) or len(v["vec"]) > 1:
            raise MoveValueError(f"Option is not {{\"vec\": [] | [value]}}: {_short(v)}")
        return parse(inner, v["vec"][0]) if v["vec"] else None
    if head == "0x1::object::Object" and inner is not None:
        if not isinstance(v, dict) or set(v) != {"inner"}:
            raise MoveValueError(f"Object is not {{\"inner\": address}}: {_short(v)}")
        return address(v["inner"])
    raise MoveValueError(f"unsupported Move type {move_type!r}")


def parse_struct(fields: tuple[tuple[str, str], ...], data: Any) -> dict[str, Any]:
    """An event's `data` object: exactly the declared fields, each parsed by its type."""
    if not isinstance(data, dict):
        raise MoveValueError(f"event data is not an object: {_short(data)}")
    names = [n for n, _ in fields]
    if set(data) != set(names):
        missing, extra = sorted(set(names) - set(data)), sorted(set(data) - set(names))
        raise MoveValueError(f"event fields differ from the interface (missing {missing}, unexpected {extra[:5]})")
    out = {}
    for name, t in fields:
        try:
            out[name] = parse(t, data[name])
        except MoveValueError as exc:
            raise MoveValueError(f"{name}: {exc}") from None
    return out


def render(move_type: str, v: Any) -> Any:
    """The fullnode's JSON rendering of a Python value (the inverse of `parse`): view arguments, stand-in events."""
    t = move_type.strip()
    if t in _UINT_BITS:
        return int(v) if t in _NUMBER_TYPES else str(int(v))
    if t == "address":
        return address(v)
    if t in ("bool", "0x1::string::String"):
        return v
    head, inner = _split_generic(t)
    if head == "vector" and inner == "u8":
        return v if isinstance(v, str) else "0x" + bytes(v).hex()
    if head == "vector" and inner is not None:
        return [render(inner, x) for x in v]
    if head == "0x1::option::Option" and inner is not None:
        return {"vec": [] if v is None else [render(inner, v)]}
    raise MoveValueError(f"unsupported Move type {move_type!r}")
