"""Entry-function arguments as BCS, by Move type (aptos-sdk's Serializer/Deserializer), and the transaction hash.

`encode` accepts what the oracle's intents carry (decimal strings or ints for integers, 0x-hex for addresses and
vector<u8>); `decode` is its inverse (the stand-in fullnode reads submitted arguments with it).
"""

from __future__ import annotations

import hashlib
from typing import Any

from aptos_sdk.account_address import AccountAddress
from aptos_sdk.bcs import Deserializer, Serializer

_UINTS = ("u8", "u16", "u32", "u64", "u128", "u256")
_PREFIX = hashlib.sha3_256(b"APTOS::Transaction").digest()


def transaction_hash(signed_bcs: bytes) -> str:
    """The hash the node gives a user transaction: sha3-256(sha3-256("APTOS::Transaction") || 0x00 || BCS)."""
    return "0x" + hashlib.sha3_256(_PREFIX + b"\x00" + signed_bcs).hexdigest()


def _int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        raise ValueError(f"not an integer: {v!r}")
    if isinstance(v, str) and not (v.isascii() and v.isdigit()):
        raise ValueError(f"not a decimal integer: {v!r}")
    return int(v)


def _hexbytes(v: Any) -> bytes:
    if isinstance(v, (bytes, bytearray)):
        return bytes(v)
    if isinstance(v, str) and v[:2] == "0x":
        return bytes.fromhex(v[2:])
    raise ValueError(f"not 0x-hex bytes: {str(v)[:80]!r}")


def _write(ser: Serializer, t: str, v: Any) -> None:
    if t in _UINTS:
        n = _int(v)
        if not 0 <= n < 1 << int(t[1:]):
            raise ValueError(f"{t} out of range: {v!r}")
        getattr(ser, t)(n)
    elif t == "bool":
        if type(v) is not bool:
            raise ValueError(f"not a bool: {v!r}")
        ser.bool(v)
    elif t == "address":
        AccountAddress.from_str_relaxed(str(v)).serialize(ser)
    elif t == "0x1::string::String":
        if not isinstance(v, str):
            raise ValueError(f"not a string: {str(v)[:80]!r}")
        ser.str(v)
    elif t == "vector<u8>":
        ser.to_bytes(_hexbytes(v))
    elif t.startswith("vector<") and t.endswith(">"):
        inner = t[7:-1]
        ser.uleb128(len(v))
        for x in v:
            _write(ser, inner, x)
    else:
        raise ValueError(f"unsupported Move type {t!r}")


def encode(t: str, v: Any) -> bytes:
    ser = Serializer()
    _write(ser, t, v)
    return ser.output()


def _read(de: Deserializer, t: str) -> Any:
    if t in _UINTS:
        return getattr(de, t)()
    if t == "bool":
        return de.bool()
    if t == "address":
        return "0x" + AccountAddress.deserialize(de).address.hex()
    if t == "0x1::string::String":
        return de.str()
    if t == "vector<u8>":
        return "0x" + de.to_bytes().hex()
    if t.startswith("vector<") and t.endswith(">"):
        return [_read(de, t[7:-1]) for _ in range(de.uleb128())]
    raise ValueError(f"unsupported Move type {t!r}")


def decode(t: str, raw: bytes) -> Any:
    de = Deserializer(raw)
    v = _read(de, t)
    if de.remaining():
        raise ValueError(f"{de.remaining()} bytes left after {t}")
    return v
