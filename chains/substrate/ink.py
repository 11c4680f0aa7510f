"""ink! contract events (`Contracts.ContractEmitted{contract, data}`) decoded with the contract's metadata JSON.

Which event a payload is depends on the ink! version that built the contract:
- ink! v3/v4 (metadata V1-V4): the first byte of `data` is the event's index in `spec.events`;
- ink! v5 (metadata version 5): the event record's first topic is the event's `signature_topic`,
  blake2_256("Name(type,...)"), and `data` holds only the fields; anonymous events carry no signature topic.
The fields decode with the contract's own type registry through substrate-interface's ContractMetadata and
ContractEvent (scalecodec), without a node. Accounts come out as 0x-hex public keys, as everywhere else here.
No contracts runtime runs here (chopsticks' Asset Hub has no contracts pallet): this is tested on the recorded
vectors and metadata in ../shared/fixtures/substrate.

The oracle's writes to a contract (`ROLE_MESSAGES`: an escrow's `record_offchain_payment`) are messages of the same
metadata: `Contracts.call` data is the message's selector followed by its arguments SCALE-encoded with the contract's
types (`InkDecoder.message_data`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

from scalecodec.base import ScaleBytes

from chains.substrate.runtime import own_config

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


# The protocol's write intents on a role's contract: (contract, function) -> (ink! message label, argument labels in
# the order of the intent's args). The oracle refuses to start on a contract whose metadata lacks them.
ROLE_MESSAGES: dict[str, dict[str, tuple[str, tuple[str, ...]]]] = {
    "Escrow": {"recordOffchainPayment": ("record_offchain_payment", ("order_id", "payment_ref"))},
}


class InkDecoder:
    """Decoder of one contract's events; encoder of its messages' call data."""

    def __init__(self, metadata: Mapping[str, Any]) -> None:
        from substrateinterface.contracts import ContractMetadata

        self.config = own_config()
        node = SimpleNamespace(init_runtime=lambda: None, runtime_config=self.config,  # no node needed
                               encode_scale=lambda type_string, value: self.config.create_scale_object(type_string).encode(value))
        self.metadata = ContractMetadata(copy.deepcopy(dict(metadata)), node)
        self.version = self.metadata.metadata_version
        self.events = self.metadata.metadata_dict["spec"]["events"]
        self.messages = {m.get("label"): m for m in self.metadata.metadata_dict["spec"].get("messages", ())}

    def message_data(self, label: str, args: Mapping[str, Any]) -> bytes:
        """`Contracts.call` data: the message's selector, then its arguments encoded with the contract's types
        (ValueError for a message the contract does not have or arguments its types refuse)."""
        if label not in self.messages:
            raise ValueError(f"the contract has no message {label}")
        try:
            return bytes(self.metadata.generate_message_data(label, dict(args)).data)
        except Exception as exc:  # noqa: BLE001 - scalecodec raises many types on a value its type refuses
            raise ValueError(f"ink! message {label}: {type(exc).__name__}: {str(exc)[:200]}") from None

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
    """A followed ink! contract: its role, its decoder and the weight limit of the oracle's calls to it."""

    def __init__(self, role: str, decoder: InkDecoder, gas_limit: tuple[int, int]) -> None:
        self.role, self.decoder, self.gas_limit = role, decoder, gas_limit

    def call_data(self, function: str, args: Sequence[Any]) -> bytes:
        """The `Contracts.call` data of the protocol write `function(*args)` on this contract (ROLE_MESSAGES)."""
        label, names = ROLE_MESSAGES[self.role][function]
        return self.decoder.message_data(label, dict(zip(names, args, strict=True)))

    def missing_messages(self) -> list[str]:
        """The role's messages (with their arguments) this contract's metadata does not declare."""
        out = []
        for label, names in ROLE_MESSAGES[self.role].values():
            m = self.decoder.messages.get(label)
            if m is None or [a.get("label") for a in m.get("args", ())] != list(names):
                out.append(f"{label}({', '.join(names)})")
        return out

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
    roles: dict[str, str] = {}
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
        if c.role in roles:  # its rows are keyed by the role's own ids (order ids): two contracts would collide
            raise ConfigError(f"{key}: a second {c.role} contract on this chain (the first is {roles[c.role]}); "
                              "follow one per chain")
        roles[c.role] = address
        out[pk] = FollowedContract(c.role, dec, c.gas_limit)
    return out
