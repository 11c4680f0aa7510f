"""ink! contract events (`Contracts.ContractEmitted{contract, data}`) decoded with the contract's metadata JSON.

Which event a payload is depends on the ink! version that built the contract:
- ink! v3/v4 (metadata V1-V4): the first byte of `data` is the event's index in `spec.events`;
- ink! v5 (metadata version 5): the event record's first topic is the event's `signature_topic`,
  blake2_256("Name(type,...)"), and `data` holds only the fields; anonymous events carry no signature topic.
The fields decode with the contract's own type registry through substrate-interface's ContractMetadata and
ContractEvent (scalecodec), without a node. Accounts come out as 0x-hex public keys, as everywhere else here.
No contracts runtime runs here (chopsticks' Asset Hub has no contracts pallet): this is tested on the recorded
vectors and metadata in ../shared/fixtures/substrate.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

from scalecodec.base import RuntimeConfigurationObject, ScaleBytes
from scalecodec.type_registry import load_type_registry_preset

MAX_DATA = 16 * 1024
MAX_METADATA = 8 * 1024 * 1024
# The events of each role, by name, with their fields as the protocol's handlers know them (contracts/Escrow.sol's
# names); an ink! contract declares them in snake_case (contracts/substrate/escrow.json).
ROLE_EVENTS: dict[str, dict[str, tuple[str, ...]]] = {
    "Escrow": {
        "OrderCreated": ("orderId", "buyer", "seller", "amount", "metadataHash"),
        "Funded": ("orderId", "payer", "amount", "paymentRef"),
        "Shipped": ("orderId", "trackingHash"),
        "Delivered": ("orderId",),
        "Disputed": ("orderId", "by", "reason"),
        "Resolved": ("orderId", "refundedBuyer"),
        "Cancelled": ("orderId",),
    },
}


class InkDecoder:
    """Decoder of one contract's events."""

    def __init__(self, metadata: Mapping[str, Any]) -> None:
        from substrateinterface.contracts import ContractMetadata

        self.config = RuntimeConfigurationObject()
        self.config.update_type_registry(load_type_registry_preset("core"))
        node = SimpleNamespace(init_runtime=lambda: None, runtime_config=self.config)  # no node needed to decode
        self.metadata = ContractMetadata(copy.deepcopy(dict(metadata)), node)
        self.version = self.metadata.metadata_version
        self.events = self.metadata.metadata_dict["spec"]["events"]

    def decode(self, data: bytes, topics: Sequence[str] = ()) -> tuple[str, dict[str, Any]]:
        """(event label, {arg label: value}); ValueError naming the problem for a payload that is not one of
        this contract's events."""
        from substrateinterface.contracts import ContractEvent

        if len(data) > MAX_DATA:
            raise ValueError(f"ContractEmitted data of {len(data)} bytes exceeds {MAX_DATA}")
        if self.version >= 5:
            wanted = str(topics[0]).lower() if topics else None
            index = next((i for i, e in enumerate(self.events) if e.get("signature_topic") == wanted), None)
            if index is None:
                raise ValueError(f"no event of this contract has signature topic {str(wanted)[:18]}")
            data = bytes([index]) + data
        elif not data or data[0] >= len(self.events):
            raise ValueError(f"event index {data[0] if data else None} is not one of {len(self.events)} events")
        obj = ContractEvent(data=ScaleBytes(bytearray(data)), runtime_config=self.config,
                            contract_metadata=self.metadata)
        try:
            value = obj.decode()
        except Exception as exc:  # noqa: BLE001 - scalecodec raises many types on bad bytes
            raise ValueError(f"ink! event does not decode: {type(exc).__name__}: {str(exc)[:200]}") from None
        return value["name"], {a["label"]: _plain(a["value"]) for a in value["args"]}


def _plain(v: Any) -> Any:
    """Option<AccountId> decodes as the key or None; keep accounts as lowercase 0x-hex."""
    if isinstance(v, str) and v[:2] == "0x":
        return v.lower()
    return v


def snake(name: str) -> str:
    """orderId -> order_id: an ink! field label for a protocol field name."""
    return "".join("_" + c.lower() if c.isupper() else c for c in name)


class FollowedContract:
    """A followed ink! contract: its role and its decoder."""

    def __init__(self, role: str, decoder: InkDecoder) -> None:
        self.role, self.decoder = role, decoder

    def protocol_event(self, data: bytes, topics: Sequence[str]) -> tuple[str, dict[str, Any]] | None:
        """(event, protocol args) of one ContractEmitted payload; None for an event of the contract that is not one
        of its role's (ownership, upgrades...: not indexed, as on EVM); ValueError for a payload that does not decode
        or an event of the role whose fields are not the expected ones."""
        name, args = self.decoder.decode(data, topics)
        fields = ROLE_EVENTS[self.role].get(name)
        if fields is None:
            return None
        missing = [snake(f) for f in fields if snake(f) not in args]
        if missing:
            raise ValueError(f"{self.role} event {name} has no field {', '.join(missing)}")
        return name, {f: args[snake(f)] for f in fields}


def load_contracts(settings: Mapping[str, Any], chain: str) -> dict[str, FollowedContract]:
    """chains.<chain>.ink_contracts as {0x public key: FollowedContract}; ConfigError naming the key when an address
    does not parse, a metadata file cannot be read, or it does not declare its role's events."""
    import json
    from pathlib import Path

    from chains.substrate.accounts import public_key
    from core.config import ConfigError

    out: dict[str, FollowedContract] = {}
    for address, c in settings.items():
        key = f"chains.{chain}.ink_contracts.{address}"
        try:
            pk = public_key(address)
        except ValueError as exc:
            raise ConfigError(f"{key}: {exc}") from None
        path = Path(c.metadata)
        try:
            if path.stat().st_size > MAX_METADATA:
                raise ConfigError(f"{key}.metadata: {path} is larger than {MAX_METADATA // 2**20} MiB")
            dec = InkDecoder(json.loads(path.read_text()))
        except ConfigError:
            raise
        except OSError as exc:
            raise ConfigError(f"{key}.metadata: cannot read {path} ({exc.strerror or exc})") from None
        except Exception as exc:  # noqa: BLE001 - json and substrate-interface raise many types on a bad document
            raise ConfigError(f"{key}.metadata: {path} is not ink! metadata ({type(exc).__name__}: "
                              f"{str(exc)[:160]})") from None
        declared = {e.get("label"): {a.get("label") for a in e.get("args", ())} for e in dec.events}
        for name, fields in ROLE_EVENTS[c.role].items():
            want = {snake(f) for f in fields}
            if name not in declared or not want <= declared[name]:
                raise ConfigError(f"{key}.metadata: {path} does not declare the {c.role} event {name}"
                                  f"({', '.join(sorted(want))}); see contracts/substrate/escrow.json")
        out[pk] = FollowedContract(c.role, dec)
    return out
