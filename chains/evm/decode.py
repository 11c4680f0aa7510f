"""Pure decoders from raw JSON-RPC log/block objects to `chains.base` dataclasses (no web3 on this path).

Decoders are precomputed once per ABI event: indexed topics are sliced directly, static non-indexed data
(uint/int/address/bytes32/bool words) is sliced by offset, and only events with dynamic data (strings, arrays)
go through `eth_abi.decode`. Addresses and bytes32 come out as lowercase 0x-hex, integers as int.

Nothing from the node is trusted: a followed contract's log whose envelope (block number and hash, tx hash, log
index, topics, data) is missing or malformed, or whose words are not what the ABI allows (an address with high
bytes set, a uint8 above 255, a bool of 2, a topic longer than 32 bytes, data of the wrong length), becomes an
`UndecodableLog` (an indexing error row), never an exception and never a silently wrong value.

Logs arrive as `RawLog`s: a well-formed `eth_getLogs` answer is parsed by msgspec straight into them
(`logs_result`), without a dict per log (measured: 1.7 against orjson's 3.0 us per log on the 2-core box); any
other answer takes the generic JSON path, which keeps each value as it came for the checks below.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from eth_abi import decode as abi_decode
from eth_utils import keccak

from chains.base import Block, ChainEvent, UndecodableLog
from core.codegen import generated

_STATIC_WORD = ("uint", "int", "address", "bytes32", "bool")


# A JSON integer within int64 (msgspec's bounds stop there): the generic path (orjson) reads a larger one as a float
# (beyond uint64) and decodes it differently, so anything larger leaves the typed pass and both paths see, word and
# key the same value.
_Int = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


class RawLog(msgspec.Struct, gc=False):
    """One log object of an `eth_getLogs` answer (None where a field is absent).

    `logs_result` fills it only from answers whose every log has exactly these fields with these JSON types; it
    skips nothing and takes no value of an open type, so msgspec never recurses into a hostile document (its depth
    guard is Python's recursion limit, which py_ecc raises to 100,000 at import: enough to overflow the C stack).
    Any other answer goes through the generic JSON path (orjson, depth 1024) and `raw_log`, which keeps each value
    as it came: the checks in `LogDecoder.decode` are what refuse a wrong one either way. (gc=False: JSON values hold
    no reference cycles.)"""

    address: str | None = None
    topics: list[str] | None = None
    data: str | None = None
    blockHash: str | None = None
    blockNumber: str | _Int | None = None
    transactionHash: str | None = None
    transactionIndex: str | _Int | None = None
    logIndex: str | _Int | None = None
    blockTimestamp: str | _Int | None = None
    removed: bool | None = None


_FIELDS = RawLog.__struct_fields__


class _StrictLog(RawLog, forbid_unknown_fields=True, gc=False):
    # Fields other clients add to a log (seen in recorded mainnet answers): accepted with their JSON type, unused.
    transactionLogIndex: str | _Int | None = None
    type: str | None = None


class _LogsAnswer(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    jsonrpc: str | None = None
    id: int | str | None = None
    result: list[_StrictLog] | None = None


_LOGS_ANSWER = msgspec.json.Decoder(_LogsAnswer)


def raw_log(log: Mapping[str, Any]) -> RawLog:
    """A RawLog of a log given as a mapping (the generic JSON path, tests), each value as it is."""
    return log if isinstance(log, RawLog) else RawLog(*map(log.get, _FIELDS))


def logs_result(body: bytes) -> list[RawLog] | None:
    """The `result` of an eth_getLogs answer, parsed in one typed pass when it is a list of well-formed log objects;
    None for anything else (an error object, malformed JSON, another shape, an unexpected field or type): the
    caller's generic JSON path decides then."""
    try:
        return _LOGS_ANSWER.decode(body).result
    except (msgspec.DecodeError, RecursionError):  # a ValidationError is a DecodeError
        return None


def event_signature(item: Mapping[str, Any]) -> str:
    def typ(i: Mapping[str, Any]) -> str:
        if i["type"].startswith("tuple"):
            return "(" + ",".join(typ(c) for c in i["components"]) + ")" + i["type"][5:]
        return i["type"]

    return f"{item['name']}({','.join(typ(i) for i in item['inputs'])})"


def topic0(item: Mapping[str, Any]) -> str:
    return "0x" + keccak(text=event_signature(item)).hex()


# Hex checks on the hot path avoid regexes and str.isalnum (5-10 ns per character on these machines): short values
# use string methods, long ones bytes.translate. isascii() first, because int() accepts non-ASCII digits.


def _alnum(s: str) -> bool:
    return s.isascii() and s.isalnum()


def _hex32(v: Any) -> bool:
    """0x + 64 hex digits (a topic, a block or tx hash)."""
    if type(v) is not str or len(v) != 66 or v[:2] != "0x" or not v.isascii():
        return False
    return v.encode().translate(None, b"0123456789abcdefABCDEF") == b"x"


_Z = "0" * 64
_SIXTY_SIX = [(66,) * k for k in range(16)]  # expected topic lengths by count (an EVM log has at most 4 topics)
_ZEROS, _XS, _XB = ["0" * k for k in range(16)], ["x" * k for k in range(16)], [b"x" * (k + 1) for k in range(16)]


def _word(typ: str) -> Callable[[str], Any]:
    """Decoder of one 32-byte word given as 64 lowercase hex chars (no 0x; `decode_args` has checked they are
    hex), refusing values the ABI type cannot hold."""
    if typ == "address":
        def address(h: str) -> str:
            if h[:24] != _Z[:24]:
                raise ValueError("address word has non-zero high bytes")
            return "0x" + h[24:64]

        return address
    if typ.startswith("uint"):
        bits = int(typ[4:] or 256)
        if bits == 256:
            return lambda h: int(h, 16)

        def uint(h: str) -> int:
            v = int(h, 16)
            if v >> bits:
                raise ValueError(f"{typ} out of range")
            return v

        return uint
    if typ.startswith("int"):
        bits = int(typ[3:] or 256)
        low, high = 1 << (bits - 1), (1 << 256) - (1 << (bits - 1))

        def signed(h: str) -> int:
            v = int(h, 16)
            if v < low:
                return v
            if v >= high:
                return v - (1 << 256)
            raise ValueError(f"{typ} out of range (not sign-extended)")

        return signed
    if typ == "bool":
        def boolean(h: str) -> bool:
            if h[:63] != _Z[:63] or h[63] not in "01":
                raise ValueError("bool word is neither 0 nor 1")
            return h[63] == "1"

        return boolean
    if typ.startswith("bytes") and not typ == "bytes":
        n = int(typ[5:])

        def fixed(h: str) -> str:
            if h[2 * n:] != _Z[2 * n:]:
                raise ValueError(f"{typ} word has non-zero padding")
            return "0x" + h[: 2 * n]

        return fixed
    raise TypeError(typ)


def _topic_hash(h: str) -> str:
    """An indexed dynamic value (string, bytes, array) is stored as its keccak: keep the raw word."""
    return "0x" + h


def _extractor(name: str, words: Sequence[tuple[str, str, int]]) -> Callable[[str], dict[str, Any]]:
    """One function per event that slices every word of a checked, lowercased `topics + data` string at fixed
    offsets and returns the args dict: `words` is (arg name, ABI type or "topic" for a hashed indexed value,
    offset). Generated once per ABI event (the per-field closures, loop and dict stores cost ~1 us per log of a
    backfill); addresses and uint256 decode inline, every other type through its `_word` decoder, with the same
    checks and errors."""
    env: dict[str, Any] = {"Z24": _Z[:24]}
    checks, items = [], []
    for k, (arg, typ, at) in enumerate(words):
        word = f"low[{at}:{at + 64}]"
        if typ == "address":
            checks.append(f"    if low[{at}:{at + 24}] != Z24:\n        raise ValueError('address word has non-zero high bytes')")
            expr = f"'0x' + low[{at + 24}:{at + 64}]"
        elif typ == "topic":
            expr = f"'0x' + {word}"
        elif typ in ("uint", "uint256"):
            expr = f"int({word}, 16)"
        else:
            env[f"w{k}"] = _word(typ)
            expr = f"w{k}({word})"
        items.append(f"{arg!r}: {expr}")
    return generated(f"decoder {name}", "def f(low):\n" + "".join(c + "\n" for c in checks)
                     + "    return {" + ", ".join(items) + "}\n", env)


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
    extract: Callable[[str], dict[str, Any]] | None = None  # static: every arg from the checked string (_extractor)

    @classmethod
    def from_abi(cls, contract: str, item: Mapping[str, Any]) -> EventDecoder:
        idx, names, types, spots = [], [], [], []
        for i in item["inputs"]:
            if i.get("indexed"):
                # Indexed dynamic values are stored as their keccak: keep the raw topic.
                static_word = _is_static_word(i["type"])
                idx.append((i["name"], _word(i["type"]) if static_word else _topic_hash))
                spots.append((i["name"], i["type"] if static_word else "topic", 66 * len(idx) + 2))
            else:
                names.append(i["name"])
                types.append(i["type"])
        static = all(_is_static_word(t) for t in types)
        extract = None
        if static:  # data words follow the topics (66 chars each) and data's own "0x"
            base = 66 * (len(idx) + 1) + 2
            spots += [(n, t, base + 64 * k) for k, (n, t) in enumerate(zip(names, types))]
            extract = _extractor(f"{contract}.{item['name']}", spots)
        return cls(contract, item["name"], topic0(item), tuple(idx), tuple(names), tuple(types), static, extract)

    def decode_args(self, topics: Sequence[str], data: str) -> dict[str, Any]:
        """Decode raw topics (0x + 64 hex each) and data (0x + hex); ValueError (or TypeError for non-strings) on
        anything malformed or that the ABI refuses."""
        n = len(topics)
        if n != len(self.indexed) + 1:
            raise ValueError(f"{self.name}: expected {len(self.indexed) + 1} topics, got {n}")
        # Checked in a few C-level passes (str.isalnum and regexes cost 5-10 ns per character here): each topic 66
        # chars with 0x at its start, data 0x + an even number of chars, and nothing but hex digits besides those
        # n + 1 x's (bytes.translate deletes the hex digits; ASCII-only, so none of the whitespace, underscores, signs
        # or non-ASCII digits that int() and fromhex() would tolerate).
        joined = "".join(topics) + data
        lt = 66 * n
        if (tuple(map(len, topics)) != _SIXTY_SIX[n] or joined[0:lt:66] != _ZEROS[n] or joined[1:lt:66] != _XS[n]
                or data[:2] != "0x" or len(data) % 2):
            raise ValueError(f"{self.name}: topics or data are not 0x-hex words: {str(topics)[:160]!r} {str(data)[:80]!r}")
        rest = joined.encode("ascii").translate(None, b"0123456789abcdef")
        if rest != _XB[n]:
            if rest.translate(None, b"ABCDEF") != _XB[n]:
                raise ValueError(f"{self.name}: topics or data are not hex: {str(topics)[:160]!r} {str(data)[:80]!r}")
            joined = joined.lower()
        if self.extract is not None:
            want = 64 * len(self.data_types)
            if len(data) - 2 != want:
                raise ValueError(f"{self.name}: data too {'short' if len(data) - 2 < want else 'long'} "
                                 f"({(len(data) - 2) // 2} bytes, expected {want // 2})")
            return self.extract(joined)
        args: dict[str, Any] = {}
        for k, (name, dec) in enumerate(self.indexed, 1):
            args[name] = dec(joined[66 * k + 2: 66 * k + 66])
        body = joined[66 * n + 2:]
        if self.data_types:
            values = abi_decode(list(self.data_types), bytes.fromhex(body))
            for name, typ, v in zip(self.data_names, self.data_types, values):
                args[name] = _normalise(typ, v)
        return args


class LogDecoder:
    """Routes raw logs to decoders by (emitting address, topic0): two contracts may share a topic0
    (Marketplace.Cancelled and Escrow.Cancelled), so the address decides which ABI applies."""

    def __init__(self, chain: str, contracts: Mapping[str, tuple[str, Sequence[Mapping[str, Any]]]],
                 markets: Iterable[tuple[str, str, Sequence[Mapping[str, Any]]]] = ()) -> None:
        """contracts: name -> (address, abi); markets: (contract name, address, abi) of existing carbon markets,
        where several addresses may share one contract name (every Toucan TCO2 is its own ERC-20)."""
        self.chain = chain
        self.by_address: dict[str, tuple[str, dict[str, EventDecoder]]] = {}
        shared: dict[str, dict[str, EventDecoder]] = {}  # one decoder set per market contract name
        entries = [(n, a, b, False) for n, (a, b) in contracts.items()] + [(n, a, b, True) for n, a, b in markets]
        for name, address, abi, market in entries:
            if market and address.lower() in self.by_address:
                raise ValueError(f"{address} is followed twice ({self.by_address[address.lower()][0]} and {name})")
            decs = shared.get(name) if market else None
            if decs is None:
                decs = {}
                for item in abi:
                    if item.get("type") == "event" and not item.get("anonymous"):
                        d = EventDecoder.from_abi(name, item)
                        decs[d.topic0] = d
                if market:
                    shared[name] = decs
            self.by_address[address.lower()] = (name, decs)

    @property
    def addresses(self) -> list[str]:
        return list(self.by_address)

    def decode(self, log: RawLog | Mapping[str, Any], timestamp: int, fallback_block: int = -1, seq: int = 0
               ) -> ChainEvent | UndecodableLog | None:
        """None for logs we do not follow (other addresses, topic0s not in the ABI); an UndecodableLog for a
        followed contract's log that is malformed in any way. `fallback_block` places a log whose block number is
        unusable (the start of the range it came from); `seq` tells identical broken logs apart."""
        if not isinstance(log, RawLog):
            log = raw_log(log)
        address = log.address
        if type(address) is not str:
            return None
        entry = self.by_address.get(address)  # nodes answer lowercase: lower() (a new string to hash) only if not
        if entry is None:
            address = address.lower()
            entry = self.by_address.get(address)
            if entry is None:
                return None
        contract, decs = entry
        topics = log.topics
        t0 = topics[0] if type(topics) is list and topics else None
        dec = None
        if type(t0) is str:
            dec = decs.get(t0)
            if dec is None:
                dec = decs.get(t0.lower())
        if dec is None and _hex32(t0):
            return None  # an event of this address that the ABI does not list: not one we follow
        # The envelope, straight-line on the hot path (this runs for every log of a backfill).
        raw_n, raw_i = log.blockNumber, log.logIndex
        number = _QUANTITIES.get(raw_n, -1) if type(raw_n) is str else -1  # the memo inline: seen strings
        if number == -1:
            number = quantity(raw_n)
        index = _QUANTITIES.get(raw_i, -1) if type(raw_i) is str else -1
        if index == -1:
            index = quantity(raw_i)
        block_hash, tx_hash = _hash(log.blockHash), _hash(log.transactionHash)
        if number is None or index is None or block_hash is None or tx_hash is None or dec is None:
            number, block_hash, tx_hash, index, problem = _envelope(log)
            if problem is None:
                problem = f"topic0 is missing or not 32 bytes of hex: {str(t0)[:80]!r}"
            return _broken(self.chain, contract, log, number, block_hash, tx_hash, index, fallback_block, seq, problem)
        try:
            args = dec.decode_args(topics, log.data)
        except Exception as exc:  # noqa: BLE001 - any decode failure becomes an indexing error row
            return UndecodableLog(self.chain, contract, number, block_hash, tx_hash, index,
                                  f"{dec.name}: {type(exc).__name__}: {exc}"[:500])
        raw_t = log.transactionIndex  # where the transaction sits in its block (provenance shows it)
        tx_index = _QUANTITIES.get(raw_t, -1) if type(raw_t) is str else -1
        if tx_index == -1:
            tx_index = quantity(raw_t)
        if tx_index is not None and tx_index >= 1 << 31:  # no block holds that many: a node's nonsense, not stored
            tx_index = None
        return ChainEvent(self.chain, contract, dec.name, args, number, block_hash, timestamp, tx_hash, index, address,
                          tx_index)


_CHECKED: dict[str, str] = {}  # raw hash -> lowercase, for hashes already checked (logs share block and tx hashes)


def _hash(v: Any) -> str | None:
    """A checked 32-byte hash, lowercased; None when `v` is not one."""
    got = _CHECKED.get(v) if type(v) is str else None
    if got is None and _hex32(v):
        if len(_CHECKED) > 4096:
            _CHECKED.clear()
        got = _CHECKED[v] = v.lower()
    return got


def _envelope(log: RawLog) -> tuple[int | None, str | None, str | None, int | None, str | None]:
    """(block number, block hash, tx hash, log index, first problem or None), each checked strictly."""
    raw_n, raw_b, raw_t, raw_i = log.blockNumber, log.blockHash, log.transactionHash, log.logIndex
    number, index, block_hash, tx_hash = quantity(raw_n), quantity(raw_i), _hash(raw_b), _hash(raw_t)
    if number is not None and index is not None and block_hash is not None and tx_hash is not None:
        return number, block_hash, tx_hash, index, None
    problem = None
    for key, raw, ok in (("blockNumber", raw_n, number), ("blockHash", raw_b, block_hash),
                         ("transactionHash", raw_t, tx_hash), ("logIndex", raw_i, index)):
        if ok is None:
            kind = "a 32-byte hash" if key.endswith("Hash") else "a quantity"
            problem = f"{key} is not {kind}: {str(raw)[:80]!r}"
            break
    return number, block_hash, tx_hash, index, problem


def _broken(chain: str, contract: str, log: RawLog, number: int | None, block_hash: str | None,
            tx_hash: str | None, index: int | None, fallback_block: int, seq: int, problem: str) -> UndecodableLog:
    """An indexing error for a log whose envelope cannot be trusted, keyed so that it cannot collide with a real
    log's key or with another broken log: a missing tx hash or log index is replaced by a digest of the raw log."""
    block = number if number is not None else fallback_block
    if tx_hash is None or index is None:
        fields = [(f, v) for f, v in zip(_FIELDS, msgspec.structs.astuple(log)) if v is not None]
        digest = hashlib.sha256(f"{block}|{seq}|{sorted(map(str, fields))}".encode()).hexdigest()
        tx_hash = tx_hash or "0x" + digest
        index = index if index is not None else -1 - int(digest[:12], 16)  # negative: never a real log index
    return UndecodableLog(chain, contract, block, block_hash or "", tx_hash, index, f"malformed log: {problem}"[:500])


# Quantities repeat across the logs of a range (each block's number and timestamp on every one of its logs, log
# indexes in every block): a memo of string -> value parses each distinct string once. Bounded; a race between
# threads at worst parses a string twice.
_QUANTITIES: dict[str, int | None] = {}


def quantity(v: Any) -> int | None:
    """A JSON-RPC quantity (0x-hex up to 64 bits, or a JSON integer) as int; None when it is anything else."""
    if type(v) is str:
        q = _QUANTITIES.get(v, -1)
        if q != -1:
            return q
        q = None
        if 2 < len(v) <= 18 and v[:2] == "0x" and _alnum(v):
            try:
                q = int(v, 16)
            except ValueError:
                pass
        if len(_QUANTITIES) >= 100_000:
            _QUANTITIES.clear()
        _QUANTITIES[v] = q
        return q
    if type(v) is int and 0 <= v < 1 << 64:
        return v
    return None


def decode_block(chain: str, raw: Any) -> Block:
    """A block header; ValueError when the node's answer is not a well-formed block."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"malformed block: {str(raw)[:80]!r}")
    number, ts = quantity(raw.get("number")), quantity(raw.get("timestamp"))
    h, parent = raw.get("hash"), raw.get("parentHash")
    if number is None or ts is None or not _hex32(h) or not _hex32(parent):
        raise ValueError(f"malformed block (number {str(raw.get('number'))[:20]!r}, hash {str(h)[:70]!r})")
    return Block(chain, number, h.lower(), parent.lower(), ts)


def decode_logs(decoder: LogDecoder, logs: Iterable[RawLog | Mapping[str, Any]], timestamps: Mapping[int, int],
                fallback_block: int = -1) -> list[ChainEvent | UndecodableLog]:
    """Decode and order by (block, log index); `timestamps` maps block number -> unix seconds; `fallback_block`
    places a log whose own block number is unusable (the first block of the range it was fetched for)."""
    out = []
    ordered, last_block, last_index = True, -1, -1
    for seq, log in enumerate(logs):
        if not isinstance(log, RawLog):
            log = raw_log(log)
        if log.removed is True:
            continue
        stamp = quantity(log.blockTimestamp)
        if stamp is None:
            stamp = timestamps.get(quantity(log.blockNumber), 0)
        ev = decoder.decode(log, stamp, fallback_block, seq)
        if ev is not None:
            out.append(ev)
            # Nodes answer in chain order: check that as we go and sort only when it is not (the sort's key tuples
            # cost ~1 us per event of a backfill).
            n, i = ev.block_number, ev.log_index
            if n < last_block or (n == last_block and i < last_index):
                ordered = False
            last_block, last_index = n, i
    if not ordered:
        out.sort(key=lambda e: (e.block_number, e.log_index))
    return out
