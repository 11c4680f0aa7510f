"""Conversions at the API edge: checksummed addresses, ISO-8601 times, validated inputs."""

from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, TypeVar

from eth_utils import is_hex_address, to_checksum_address

from gqlapi.errors import UserError

T = TypeVar("T")


@lru_cache(maxsize=65536)
def checksum(addr: str | None) -> str | None:
    """lowercase 0x-hex (as stored) -> EIP-55 checksummed; non-addresses pass through."""
    if addr is None:
        return None
    return to_checksum_address(addr) if len(addr) == 42 else addr


def filled(cls: type[T], values: dict[str, Any]) -> T:
    """An instance of the dataclass `cls` with exactly `values` as its fields, without running __init__ (half the
    cost of a keyword call; for the many rows of a portfolio). `values` must name every field."""
    obj = object.__new__(cls)
    obj.__dict__ = values
    return obj


def iso(ts: int | None) -> str | None:
    """unix seconds -> ISO-8601 UTC ('2026-11-22T21:00:00Z'); past year 9999 (datetime's end: chain users write
    any u64) in ISO 8601's expanded form with a sign ('+036812-02-20T00:36:16Z')."""
    if ts is None:
        return None
    if -62135596800 <= ts < 253402300800:  # years 1..9999
        return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    y, m, d, hh, mm, ss = civil(ts)
    return f"{'+' if y >= 0 else '-'}{abs(y):06d}-{m:02d}-{d:02d}T{hh:02d}:{mm:02d}:{ss:02d}Z"


def civil(ts: int) -> tuple[int, int, int, int, int, int]:
    """unix seconds -> proleptic Gregorian UTC (year, month, day, hour, minute, second) for any integer: the
    era-based civil_from_days algorithm (H. Hinnant, "chrono-Compatible Low-Level Date Algorithms")."""
    days, rem = divmod(int(ts), 86400)
    era, doe = divmod(days + 719468, 146097)
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d, m = doy - (153 * mp + 2) // 5 + 1, mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (m <= 2), m, d, rem // 3600, rem % 3600 // 60, rem % 60


def percent(change: int, ref: int) -> str:
    """`change` as a percentage of `ref` with two decimals, exact at any size (integers only, no float), rounded
    half to even: percent(1, 32) == "3.12"."""
    if ref < 0:
        change, ref = -change, -ref
    q, r = divmod(change * 10_000, ref)  # hundredths of a percent, floored
    if 2 * r > ref or (2 * r == ref and q % 2):
        q += 1
    sign, q = ("-", -q) if q < 0 else ("", q)
    return f"{sign}{q // 100}.{q % 100:02d}"


def bad_text(value: str) -> str | None:
    """Why Postgres could not take `value` as text (a NUL, or not encodable as UTF-8), else None."""
    if "\x00" in value:
        return "contains a NUL (U+0000) character"
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            return "contains a lone surrogate (not valid Unicode)"
    return None


def address_arg(value: str | None, name: str) -> str | None:
    """A client-supplied address -> lowercase 0x-hex as stored, or a clear error: an EVM address (any case), or a
    Substrate account (0x + 64 hex, or SS58 of any network prefix: the same key on every network)."""
    if value is None:
        return None
    if isinstance(value, str) and is_hex_address(value):
        return value.lower()
    if isinstance(value, str) and len(value) <= 80:  # a Substrate account: stored as its 0x-hex public key
        from chains.substrate.accounts import public_key

        try:
            return public_key(value)
        except ValueError:
            pass
    raise UserError(f"{name}: not a 0x-prefixed 20-byte hex address (EVM), nor a 32-byte public key or SS58 "
                    "address (Substrate)")


def hash_arg(value: str | None, name: str) -> str | None:
    """A client-supplied 32-byte hash -> lowercase 0x-hex, or a clear error."""
    if value is None:
        return None
    v = value.lower()
    if len(v) != 66 or not v.startswith("0x") or any(c not in "0123456789abcdef" for c in v[2:]):
        raise UserError(f"{name}: not a 0x-prefixed 32-byte hex hash")
    return v


def uint_arg(value: int | None, name: str) -> int | None:
    if value is None:
        return None
    if value < 0 or value >= 1 << 256:
        raise UserError(f"{name}: must be a uint256")
    return int(value)
