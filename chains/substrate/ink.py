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
