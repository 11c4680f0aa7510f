"""Pure decoders from raw JSON-RPC log/block objects to `chains.base` dataclasses (no web3 on this path).

Decoders are precomputed once per ABI event: indexed topics are sliced directly, static non-indexed data
(uint/int/address/bytes32/bool words) is sliced by offset, and only events with dynamic data (strings, arrays)
go through `eth_abi.decode`. Addresses and bytes32 come out as lowercase 0x-hex, integers as int.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi import decode as abi_decode
from eth_utils import keccak

from chains.base import Block, ChainEvent, UndecodableLog

_STATIC_WORD = ("uint", "int", "address", "bytes32", "bool")


def event_signature(item: Mapping[str, Any]) -> str:
    def typ(i: Mapping[str, Any]) -> str:
        if i["type"].startswith("tuple"):
            return "(" + ",".join(typ(c) for c in i["components"]) + ")" + i["type"][5:]
        return i["type"]

    return f"{item['name']}({','.join(typ(i) for i in item['inputs'])})"


def topic0(item: Mapping[str, Any]) -> str:
    return "0x" + keccak(text=event_signature(item)).hex()


def _word(typ: str) -> Callable[[str], Any]:
    """Decoder of one 32-byte word given as 64 hex chars (no 0x)."""
    if typ == "address":
        return lambda h: "0x" + h[24:64]
    if typ.startswith("uint"):
        return lambda h: int(h, 16)
    if typ.startswith("int"):
        bits = 256

        def signed(h: str) -> int:
            v = int(h, 16)
            return v - (1 << bits) if v >> (bits - 1) else v

        return signed
    if typ == "bool":
        return lambda h: int(h, 16) != 0
    if typ.startswith("bytes") and not typ == "bytes":
        n = int(typ[5:])
        return lambda h: "0x" + h[: 2 * n]
    raise TypeError(typ)


def _is_static_word(typ: str) -> bool:
    return typ.startswith(_STATIC_WORD) and "[" not in typ and typ not in ("bytes", "string")


def _normalise(typ: str, v: Any) -> Any:
    if isinstance(v, (bytes, bytearray)):
        return "0x" + bytes(v).hex()
    if typ == "address":
        return v.lower()
    if isinstance(v, (list, tuple)):
        inner = typ[: typ.rindex("[")] if "[" in typ else typ
        return tuple(_normalise(inner, x) for x in v)
    return v


@dataclass(frozen=True)
class EventDecoder:
    """Precomputed decoder of one ABI event."""

    contract: str
    name: str
    topic0: str
    indexed: tuple[tuple[str, Callable[[str], Any]], ...]  # (arg name, word decoder) per topic 1..n
    data_names: tuple[str, ...]
    data_types: tuple[str, ...]
    static: bool  # all data args are single words: slice instead of eth_abi

    @classmethod
    def from_abi(cls, contract: str, item: Mapping[str, Any]) -> EventDecoder:
        idx, names, types = [], [], []
        for i in item["inputs"]:
            if i.get("indexed"):
                # Indexed dynamic values are stored as their keccak: keep the raw topic.
                dec = _word(i["type"]) if _is_static_word(i["type"]) else (lambda h: "0x" + h)
                idx.append((i["name"], dec))
            else:
                names.append(i["name"])
                types.append(i["type"])
        return cls(contract, item["name"], topic0(item), tuple(idx), tuple(names), tuple(types),
                   all(_is_static_word(t) for t in types))

    def decode_args(self, topics: Sequence[str], data: str) -> dict[str, Any]:
        if len(topics) != len(self.indexed) + 1:
            raise ValueError(f"{self.name}: expected {len(self.indexed) + 1} topics, got {len(topics)}")
        args: dict[str, Any] = {}
        for (name, dec), t in zip(self.indexed, topics[1:]):
            args[name] = dec(t[2:].rjust(64, "0"))
        body = data[2:] if data.startswith("0x") else data
        if self.static:
            if len(body) < 64 * len(self.data_types):
                raise ValueError(f"{self.name}: data too short ({len(body) // 2} bytes)")
            for k, (name, typ) in enumerate(zip(self.data_names, self.data_types)):
                args[name] = _word(typ)(body[64 * k: 64 * k + 64])
        elif self.data_types:
            values = abi_decode(list(self.data_types), bytes.fromhex(body))
            for name, typ, v in zip(self.data_names, self.data_types, values):
                args[name] = _normalise(typ, v)
        return args


class LogDecoder:
    """Routes raw logs to decoders by (emitting address, topic0): two contracts may share a topic0
    (Marketplace.Cancelled and Escrow.Cancelled), so the address decides which ABI applies."""

    def __init__(self, chain: str, contracts: Mapping[str, tuple[str, Sequence[Mapping[str, Any]]]]) -> None:
        """contracts: name -> (address, abi)."""
        self.chain = chain
        self.by_address: dict[str, tuple[str, dict[str, EventDecoder]]] = {}
        for name, (address, abi) in contracts.items():
            decs = {}
            for item in abi:
                if item.get("type") == "event" and not item.get("anonymous"):
                    d = EventDecoder.from_abi(name, item)
                    decs[d.topic0] = d
            self.by_address[address.lower()] = (name, decs)

    @property
    def addresses(self) -> list[str]:
        return list(self.by_address)

    def decode(self, log: Mapping[str, Any], timestamp: int) -> ChainEvent | UndecodableLog | None:
        """None for logs we do not follow (other addresses, events without a handler-relevant ABI entry)."""
        address = log["address"].lower()
        entry = self.by_address.get(address)
        topics = log.get("topics") or []
        if entry is None or not topics:
            return None
        contract, decs = entry
        dec = decs.get(topics[0].lower())
        if dec is None:
            return None
        number = _int(log["blockNumber"])
        try:
            args = dec.decode_args([t.lower() for t in topics], log.get("data") or "0x")
        except Exception as exc:  # noqa: BLE001 - any decode failure becomes an indexing error row
            return UndecodableLog(self.chain, contract, number, log["blockHash"].lower(), log["transactionHash"].lower(),
                                  _int(log["logIndex"]), f"{dec.name}: {type(exc).__name__}: {exc}"[:500])
        return ChainEvent(self.chain, contract, dec.name, args, number, log["blockHash"].lower(), timestamp,
                          log["transactionHash"].lower(), _int(log["logIndex"]), address)


def _int(v: Any) -> int:
    return int(v, 16) if isinstance(v, str) else int(v)


def decode_block(chain: str, raw: Mapping[str, Any]) -> Block:
    return Block(chain, _int(raw["number"]), raw["hash"].lower(), raw["parentHash"].lower(), _int(raw["timestamp"]))


def decode_logs(decoder: LogDecoder, logs: Iterable[Mapping[str, Any]], timestamps: Mapping[int, int]
                ) -> list[ChainEvent | UndecodableLog]:
    """Decode and order by (block, log index); `timestamps` maps block number -> unix seconds."""
    out = []
    for log in logs:
        if log.get("removed"):
            continue
        ts = log.get("blockTimestamp")
        ev = decoder.decode(log, _int(ts) if ts is not None else timestamps.get(_int(log["blockNumber"]), 0))
        if ev is not None:
            out.append(ev)
    out.sort(key=lambda e: (e.block_number, e.log_index))
    return out
