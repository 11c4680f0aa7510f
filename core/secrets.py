"""Signing keys in a type that never prints them."""

from __future__ import annotations

import os
from pathlib import Path


class PrivateKey:
    """A 32-byte secp256k1 key. repr/str/format show only the address; `reveal()` is the one way out."""

    __slots__ = ("_key", "address")

    def __init__(self, hex_key: str) -> None:
        from eth_account import Account

        raw = hex_key[2:] if hex_key.startswith(("0x", "0X")) else hex_key
        if len(raw) != 64:
            raise ValueError("private key must be 32 bytes of hex")
        try:
            key = bytes.fromhex(raw)
        except ValueError:
            raise ValueError("private key must be 32 bytes of hex") from None
        object.__setattr__(self, "_key", key)
        object.__setattr__(self, "address", Account.from_key(key).address)

    def reveal(self) -> bytes:
        return self._key

    def __repr__(self) -> str:
        return f"PrivateKey(address={self.address}, key=***)"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __reduce__(self):  # never pickle a key into a crash dump or a queue
        raise TypeError("PrivateKey cannot be pickled")

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("PrivateKey is immutable")

    @classmethod
    def from_keystore(cls, path: Path, passphrase: str) -> PrivateKey:
        import json

        from eth_account import Account

        try:
            return cls("0x" + Account.decrypt(json.loads(Path(path).read_text()), passphrase).hex())
        except ValueError:
            raise ValueError(f"cannot decrypt keystore {path}: wrong passphrase or corrupt file") from None


def private_key_from_env(var: str) -> PrivateKey | None:
    value = os.environ.get(var)
    if not value:
        return None
    from core.config import ConfigError

    try:
        return PrivateKey(value)
    except ValueError as err:
        raise ConfigError(f"{var}: {err}") from None
