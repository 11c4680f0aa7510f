"""Substrate accounts as the indexer stores them: 0x-hex 32-byte public keys (SS58 is a display format that
differs per network, so accounts compare as keys, never as strings)."""

from __future__ import annotations

from typing import Any

from scalecodec.utils.ss58 import ss58_decode, ss58_encode


def pallet_account(pallet_id: bytes) -> str:
    """The keyless account of a PalletId (b"modl" ++ 8-byte id, zero-padded), as frame's `into_account_truncating`."""
    if len(pallet_id) != 8:
        raise ValueError("a PalletId is 8 bytes")
    return "0x" + (b"modl" + pallet_id).ljust(32, b"\0").hex()


# Where holders send credits to retire them: nobody has this account's key, so nothing can move them out.
RETIREMENT_ACCOUNT = pallet_account(b"cl/retir")


def public_key(account: str) -> str:
    """An account given as SS58 (any network prefix) or 0x + 64 hex -> lowercase 0x-hex public key."""
    if not isinstance(account, str) or not account.isascii() or len(account) > 80:
        raise ValueError(f"not an account: {str(account)[:80]!r}")
    if account[:2] in ("0x", "0X"):
        body = account[2:]
        if len(body) != 64 or any(c not in "0123456789abcdefABCDEF" for c in body):
            raise ValueError(f"not a 32-byte public key: {account!r}")
        return "0x" + body.lower()
    try:
        key = ss58_decode(account)
    except Exception as exc:  # noqa: BLE001 - scalecodec raises ValueError and others on bad input
        raise ValueError(f"not an SS58 address: {account!r} ({exc})") from None
    if len(key) != 64:
        raise ValueError(f"not a 32-byte account: {account!r}")
    return "0x" + key.lower()


def ss58(key: str, prefix: int) -> str:
    """A 0x-hex public key in the SS58 format of network `prefix` (for display)."""
    return ss58_encode(key, ss58_format=prefix)


def check_settings(settings: Any, chain: str) -> None:
    """The accounts a substrate chain's settings name parse (ConfigError naming the key otherwise)."""
    from core.config import ConfigError

    for key, values in (("retirement_account", [settings.retirement_account] if settings.retirement_account else []),
                        ("anchor_senders", settings.anchor_senders)):
        for v in values:
            try:
                public_key(v)
            except ValueError as exc:
                raise ConfigError(f"chains.{chain}.{key}: {exc}") from None
    from chains.substrate.ink import load_contracts

    load_contracts(settings.ink_contracts, chain)  # addresses parse, metadata files read and declare the role's events
