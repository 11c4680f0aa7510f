"""carbonledger records carried by `system.remark_with_event`: what the chain cannot say with a pallet event.

`System.Remarked{sender, hash}` holds only blake2_256 of the remark; the bytes are in the block body, and the
reader keeps them only when their hash matches the event. A record is

    b"carbonledger:1:" + kind + b":" + a JSON object (UTF-8, at most MAX_BYTES in all)

The prefix separates our records from everyone else's remarks, and the kind is inside the hashed bytes, so a
record of one kind can never be read as another (domain separation). Kinds:

- ``retire`` ``{"beneficiary": str, "reason": str}``: in the same extrinsic as the credits' transfer to the
  retirement account (or the admin's `assets.burn`), typically `utility.batch_all([assets.transfer_keep_alive(
  asset, retirement_account, amount), system.remark_with_event(record)])` signed by the holder;
- ``mint`` ``{"verificationHash": "0x" + 64 hex}``: in the same extrinsic as `assets.mint`;
- ``anchor`` ``{"root": "0x" + 64 hex, "leafCount": int, "windowStart": int, "windowEnd": int,
  "qualityScore": int}``: an IoT Merkle root (chains.merkle), from an anchoring account.

Every kind may carry ``"key"``: the oracle's idempotency key (how a restarted writer finds its own write).
Parsing is bounded (size first, then a JSON object of known keys with typed, size-capped values).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

PREFIX = b"carbonledger:1:"
MAX_BYTES = 4096
_TEXT_CAP = {"beneficiary": 256, "reason": 1024, "key": 128}
SCHEMAS: dict[str, dict[str, str]] = {
    "retire": {"beneficiary": "text", "reason": "text"},
    "mint": {"verificationHash": "hash"},
    "anchor": {"root": "hash", "leafCount": "u32", "windowStart": "u64", "windowEnd": "u64", "qualityScore": "u16"},
}


class RecordError(ValueError):
    """Bytes that claim to be a carbonledger record (they carry the prefix) but are not a valid one."""


@dataclass(frozen=True)
class Record:
    kind: str
    fields: dict[str, Any]

    @property
    def key(self) -> str | None:
        return self.fields.get("key")


def encode(kind: str, fields: dict[str, Any]) -> bytes:
    """The remark bytes of a record (compact, sorted JSON); checked by `parse` so nothing invalid is ever sent."""
    raw = PREFIX + kind.encode() + b":" + json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    parse(raw)
    return raw


def _check(kind: str, name: str, typ: str, v: Any) -> Any:
    if typ == "text" or name == "key":
        if not isinstance(v, str) or len(v) > _TEXT_CAP.get(name, 256) or "\x00" in v:
            raise RecordError(f"{kind}.{name} must be a string of at most {_TEXT_CAP.get(name, 256)} characters")
        return v
    if typ == "hash":
        if not (isinstance(v, str) and len(v) == 66 and v[:2] == "0x" and v.isascii()
                and all(c in "0123456789abcdef" for c in v[2:].lower())):
            raise RecordError(f"{kind}.{name} must be 0x + 64 hex digits")
        return v.lower()
    top = (1 << int(typ[1:])) - 1
    if type(v) is not int or not 0 <= v <= top:
        raise RecordError(f"{kind}.{name} must be an integer in [0, {top}]")
    return v


def parse(raw: bytes) -> Record | None:
    """The record in remark bytes `raw`; None when they are not ours (no prefix); RecordError when malformed."""
    if not raw.startswith(PREFIX):
        return None
    if len(raw) > MAX_BYTES:
        raise RecordError(f"record of {len(raw)} bytes exceeds {MAX_BYTES}")
    kind, sep, body = raw[len(PREFIX):].partition(b":")
    kind_s = kind.decode("ascii", "replace")
    if not sep or kind_s not in SCHEMAS:
        raise RecordError(f"unknown record kind {kind_s[:32]!r}")
    try:
        obj = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise RecordError(f"{kind_s}: not a UTF-8 JSON object ({str(exc)[:80]})") from None
    if not isinstance(obj, dict):
        raise RecordError(f"{kind_s}: not a JSON object")
    schema = SCHEMAS[kind_s]
    unknown = sorted(set(obj) - set(schema) - {"key"})
    if unknown:
        raise RecordError(f"{kind_s}: unknown field {unknown[0][:40]!r}")
    missing = sorted(set(schema) - set(obj))
    if missing:
        raise RecordError(f"{kind_s}: missing field {missing[0]!r}")
    fields = {name: _check(kind_s, name, schema.get(name, "text"), v) for name, v in obj.items()}
    return Record(kind_s, fields)
