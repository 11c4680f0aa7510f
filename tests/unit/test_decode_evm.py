"""chains.evm.decode against recorded mainnet JSON-RPC (../shared/fixtures/evm) and every protocol event ABI."""

from __future__ import annotations

import json
import random

import orjson
import pytest
from eth_abi import encode

from chains.base import ChainEvent, UndecodableLog
from chains.evm.artifacts import PROTOCOL_CONTRACTS, abi
from chains.evm.decode import EventDecoder, LogDecoder, decode_block, decode_logs, logs_result, raw_log, topic0
from tests import seeds

ERC20_TRANSFER = {"type": "event", "name": "Transfer", "anonymous": False, "inputs": [
    {"name": "from", "type": "address", "indexed": True}, {"name": "to", "type": "address", "indexed": True},
    {"name": "value", "type": "uint256", "indexed": False}]}


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _result(path):
    return json.loads(path.read_text())["result"]


def test_blocks_match_expected(fixtures_dir):
    d = fixtures_dir / "evm" / "stream_blocks_1755634_1755635"
    expected = {b["number"]: b for b in _lines(d / "expected_blocks.json")}
    for f in sorted(d.glob("web3_response.eth_getBlockByNumber_0x*_true.json")):
        blk = decode_block("mainnet", _result(f))
        exp = expected[blk.number]
        assert (blk.hash, blk.parent_hash, blk.timestamp) == (exp["hash"], exp["parent_hash"], exp["timestamp"])


def test_erc20_transfers_from_receipts_match_expected(fixtures_dir):
    d = fixtures_dir / "evm" / "stream_blocks_1755634_1755635"
    blocks = {decode_block("m", _result(f)).number: decode_block("m", _result(f))
              for f in d.glob("web3_response.eth_getBlockByNumber_0x*_true.json")}
    logs = [lg for f in sorted(d.glob("web3_response.eth_getTransactionReceipt_*.json")) for lg in _result(f)["logs"]]
    expected = _lines(d / "expected_token_transfers.json")
    token = {e["token_address"] for e in expected}
    dec = LogDecoder("mainnet", {"ERC20": (a, [ERC20_TRANSFER]) for a in token} if len(token) == 1 else
                     {f"ERC20_{i}": (a, [ERC20_TRANSFER]) for i, a in enumerate(token)})
    got = [e for e in decode_logs(dec, logs, {n: b.timestamp for n, b in blocks.items()}) if isinstance(e, ChainEvent)]
    assert len(got) == len(expected) > 0
    for ev, exp in zip(got, expected):
        assert ev.name == "Transfer"
        assert (ev.args["from"], ev.args["to"], ev.args["value"]) == (exp["from_address"], exp["to_address"], exp["value"])
        assert (ev.tx_hash, ev.log_index, ev.block_number, ev.block_hash, ev.block_timestamp) == (
            exp["transaction_hash"], exp["log_index"], exp["block_number"], exp["block_hash"], exp["block_timestamp"])


def test_receipt_logs_match_expected(fixtures_dir):
    d = fixtures_dir / "evm" / "receipts_with_logs"
    expected = {(e["transaction_hash"], e["log_index"]): e for e in _lines(d / "expected_logs.json")}
    logs = [lg for f in sorted(d.glob("web3_response.eth_getTransactionReceipt_*.json")) for lg in (_result(f)["logs"] or [])]
    addresses = {lg["address"] for lg in logs}
    dec = LogDecoder("m", {f"T{i}": (a, [ERC20_TRANSFER]) for i, a in enumerate(sorted(addresses))})
    got = decode_logs(dec, logs, {})
    assert {(e.tx_hash, e.log_index) for e in got} == set(expected)
    for ev in got:
        exp = expected[(ev.tx_hash, ev.log_index)]
        assert ev.block_number == exp["block_number"] and ev.address == exp["address"]
        assert ev.args["value"] == int(exp["data"], 16)
        assert ev.args["from"] == "0x" + exp["topics"][1][-40:]


def test_typed_answers_decode_exactly_like_parsed_json(fixtures_dir):
    """Recorded mainnet logs, extra fields (type, transactionLogIndex, removed) and all, take the reader's typed pass
    and decode exactly as through the generic path (orjson) and as given as dicts."""
    logs = [lg for d in ("receipts_with_logs", "stream_blocks_1755634_1755635")
            for f in sorted((fixtures_dir / "evm" / d).glob("web3_response.eth_getTransactionReceipt_*.json"))
            for lg in (_result(f)["logs"] or [])]
    dec = LogDecoder("m", {f"T{i}": (a, [ERC20_TRANSFER]) for i, a in enumerate(sorted({lg["address"] for lg in logs}))})
    generic = decode_logs(dec, logs, {})
    assert sum(isinstance(e, ChainEvent) for e in generic) >= 3
    assert _node(dec, logs, typed=True) == generic


DEEP = 90_000  # below the recursion limit py_ecc sets (100,000), where a recursing parser overflows the C stack


@pytest.mark.parametrize("body", [
    b'{"jsonrpc":"2.0","id":1,"error":{"code":-32005,"message":"too many"}}',
    b'{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"x","data":' + b"[" * DEEP + b"]" * DEEP + b"}}",
    b'{"jsonrpc":"2.0","id":1,"result":[{"extra":' + b"[" * DEEP + b"]" * DEEP + b"}]}",
    b'{"jsonrpc":"2.0","id":1,"result":[{"topics":[' + b'{"a":' * DEEP + b"1" + b"}" * DEEP + b"]}]}",
    b'{"jsonrpc":"2.0","id":1,"other":' + b"[" * DEEP + b"]" * DEEP + b',"result":[]}',
    b'{"jsonrpc":"2.0","id":1,"result":[{"address":"0x01","blockNumber":12.5}]}',
    b'{"jsonrpc":"2.0","id":1,"result":[{"address":"0x01","topics":["0x02",7]}]}',
    b'{"jsonrpc":"2.0","id":1,"result":[],"error":{"code":1,"message":"both"}}',
    b'{"jsonrpc":"2.0","id":1,"result":null}',
    b'{"jsonrpc":"2.0","id":1,"result":{"address":"0x"}}',
    b'{"jsonrpc":"2.0","id":1,"result":[{"address":"0x"}, 5]}',
    b'{"jsonrpc":"2.0","id":1,"res',
    b'[{"jsonrpc":"2.0","id":1,"result":[]}]',
    b'{"jsonrpc":"2.0","id":1,"result":[{"data":' + b"[" * 100_000 + b"]" * 100_000 + b"}]}",
    b"\xff\xfe",
])
def test_logs_result_leaves_anything_but_well_formed_log_objects_to_the_generic_path(body):
    """Nothing hostile is recursed into (the limit is raised as py_ecc raises it on import): an error object, an
    unexpected field or a value of an unexpected JSON type ends the typed pass at once, and the generic path (orjson,
    depth 1024) words the error or keeps the value for the decoder's checks."""
    import sys

    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 100_000))
    try:
        assert logs_result(body) is None
    finally:
        sys.setrecursionlimit(old)


def test_erc1155_topics_match_published_index(fixtures_dir):
    index = json.loads((fixtures_dir / "carbon-abis" / "event_topics_index.json").read_text())["events"]
    known = {(e["abi"], e["event"]): e["topic0"] for e in index}
    erc1155 = json.loads((fixtures_dir / "carbon-abis" / "ERC1155.json").read_text())
    for item in erc1155:
        if item.get("type") == "event":
            assert topic0(item) == known[("ERC1155.json", item["name"])]
    ours = {i["name"]: topic0(i) for i in abi("CarbonCredit") if i.get("type") == "event"}
    assert ours["TransferSingle"] == known[("ERC1155.json", "TransferSingle")]
    assert ours["TransferBatch"] == known[("ERC1155.json", "TransferBatch")]


def _sample(typ: str, rng: random.Random):
    if typ.endswith("[]"):
        return [_sample(typ[:-2], rng) for _ in range(rng.randrange(0, 4))]
    if typ == "address":
        return "0x" + bytes(rng.randrange(256) for _ in range(20)).hex()
    if typ.startswith("uint"):
        return rng.randrange(2 ** int(typ[4:] or 256))
    if typ.startswith("int"):
        bits = int(typ[3:] or 256)
        return rng.randrange(-(2 ** (bits - 1)), 2 ** (bits - 1))
    if typ == "bool":
        return rng.random() < 0.5
    if typ == "string":
        return rng.choice(["", "x", "beneficiary ünïcode", "a" * 70])
    if typ.startswith("bytes"):
        return bytes(rng.randrange(256) for _ in range(int(typ[5:])))
    raise TypeError(typ)


def _topic(typ: str, v) -> str:
    return "0x" + encode([typ], [v]).hex()


def _norm(v):
    if isinstance(v, bytes):
        return "0x" + v.hex()
    if isinstance(v, list):
        return tuple(_norm(x) for x in v)
    return v


@pytest.mark.parametrize("contract", PROTOCOL_CONTRACTS)
def test_every_protocol_event_round_trips(contract):
    rng = seeds.rng(contract)
    address = "0x" + "ab" * 20
    dec = LogDecoder("dev", {contract: (address, abi(contract))})
    events = [i for i in abi(contract) if i.get("type") == "event"]
    assert events
    for item in events:
        for _ in range(5):
            values = {i["name"]: _sample(i["type"], rng) for i in item["inputs"]}
            idx = [i for i in item["inputs"] if i.get("indexed")]
            data = [i for i in item["inputs"] if not i.get("indexed")]
            log = {"address": address, "topics": [topic0(item)] + [_topic(i["type"], values[i["name"]]) for i in idx],
                   "data": "0x" + encode([i["type"] for i in data], [values[i["name"]] for i in data]).hex(),
                   "blockNumber": "0x10", "blockHash": "0x" + "11" * 32, "transactionHash": "0x" + "22" * 32,
                   "logIndex": "0x3"}
            ev = dec.decode(log, 1234)
            assert isinstance(ev, ChainEvent), ev
            assert (ev.contract, ev.name, ev.key) == (contract, item["name"], f"{contract}:{item['name']}")
            assert dict(ev.args) == {k: _norm(v) for k, v in values.items()}


def test_shared_topic0_is_decoded_by_emitting_address():
    m, e = "0x" + "01" * 20, "0x" + "02" * 20
    dec = LogDecoder("dev", {"Marketplace": (m, abi("Marketplace")), "Escrow": (e, abi("Escrow"))})
    cancelled = next(i for i in abi("Marketplace") if i.get("name") == "Cancelled")
    base = {"topics": [topic0(cancelled), _topic("uint256", 9)], "data": "0x", "blockNumber": "0x1",
            "blockHash": "0x" + "00" * 32, "transactionHash": "0x" + "00" * 32, "logIndex": "0x0"}
    assert dec.decode({**base, "address": m}, 0).contract == "Marketplace"
    assert dec.decode({**base, "address": e.upper().replace("0X", "0x")}, 0).contract == "Escrow"


def test_undecodable_and_unknown_logs():
    a = "0x" + "01" * 20
    dec = LogDecoder("dev", {"CarbonCredit": (a, abi("CarbonCredit"))})
    ts = next(i for i in abi("CarbonCredit") if i.get("name") == "TransferSingle")
    meta = {"address": a, "blockNumber": "0x5", "blockHash": "0x" + "aa" * 32, "transactionHash": "0x" + "bb" * 32,
            "logIndex": "0x7"}
    short = dec.decode({**meta, "topics": [topic0(ts)] + [_topic("address", a)] * 3, "data": "0x" + "00" * 40}, 0)
    assert isinstance(short, UndecodableLog) and (short.block_number, short.log_index) == (5, 7) and "short" in short.error
    wrong_topics = dec.decode({**meta, "topics": [topic0(ts)], "data": "0x" + "00" * 64}, 0)
    assert isinstance(wrong_topics, UndecodableLog)
    assert dec.decode({**meta, "topics": ["0x" + "99" * 32], "data": "0x"}, 0) is None
    assert dec.decode({**meta, "address": "0x" + "03" * 20, "topics": [topic0(ts)], "data": "0x"}, 0) is None


def test_static_fast_path_agrees_with_eth_abi():
    ts = next(i for i in abi("CarbonCredit") if i.get("name") == "TransferSingle")
    d = EventDecoder.from_abi("CarbonCredit", ts)
    assert d.static
    big = 2**256 - 1
    args = d.decode_args([topic0(ts), _topic("address", "0x" + "11" * 20), _topic("address", "0x" + "00" * 20),
                          _topic("address", "0x" + "ff" * 20)], "0x" + encode(["uint256", "uint256"], [big, 0]).hex())
    assert args == {"operator": "0x" + "11" * 20, "from": "0x" + "00" * 20, "to": "0x" + "ff" * 20, "id": big, "value": 0}


# --------------------------------------------------------------------------- hostile or broken node answers


def _transfer_single_log(a: str) -> tuple[dict, dict]:
    ts = next(i for i in abi("CarbonCredit") if i.get("name") == "TransferSingle")
    log = {"address": a, "blockNumber": "0x5", "blockHash": "0x" + "aa" * 32, "transactionHash": "0x" + "bb" * 32,
           "logIndex": "0x7", "topics": [topic0(ts), _topic("address", a), _topic("address", "0x" + "00" * 20),
                                          _topic("address", "0x" + "cc" * 20)],
           "data": "0x" + encode(["uint256", "uint256"], [1, 5]).hex()}
    return ts, log


def _node(dec: LogDecoder, logs: list, stamps: dict | None = None, fallback_block: int = -1,
          typed: bool | None = None) -> list:
    """Decode `logs` as the reader does from a node's eth_getLogs answer: the body parsed by `logs_result`, or where
    that declines, by the generic path (orjson, then `raw_log`). Where the typed pass takes the answer, the generic
    path must decode it identically. `typed`: which of the two must take it."""
    body = json.dumps({"jsonrpc": "2.0", "id": 7, "result": logs}).encode()
    generic = decode_logs(dec, [raw_log(x) for x in orjson.loads(body)["result"]], stamps or {}, fallback_block)
    fast = logs_result(body)
    assert typed is None or (fast is not None) == typed
    if fast is not None:
        assert decode_logs(dec, fast, stamps or {}, fallback_block) == generic
    return generic


def _decode(via: str, dec: LogDecoder, logs: list, stamps: dict | None = None, fallback_block: int = -1) -> list:
    return _node(dec, logs, stamps, fallback_block) if via == "node" else decode_logs(dec, logs, stamps or {}, fallback_block)


VIA = ["dicts", "node"]


@pytest.mark.parametrize("via", VIA)
@pytest.mark.parametrize("field", ["blockHash", "logIndex", "blockNumber", "transactionHash"])
@pytest.mark.parametrize("bad", [None, "", "0xzz", 12.5, "0x" + "1" * 200, 2**70, [], {"a": 1}, True])
def test_a_broken_log_envelope_is_an_indexing_error_not_a_crash(field, bad, via):
    a = "0x" + "01" * 20
    dec = LogDecoder("dev", {"CarbonCredit": (a, abi("CarbonCredit"))})
    _, log = _transfer_single_log(a)
    got = _decode(via, dec, [{**log, field: bad}], {5: 100}, fallback_block=5)
    assert len(got) == 1 and isinstance(got[0], UndecodableLog), got
    u = got[0]
    assert field in u.error and u.block_number == 5
    assert u.tx_hash.startswith("0x") and len(u.tx_hash) == 66


@pytest.mark.parametrize("via", VIA)
def test_broken_logs_get_distinct_keys(via):
    a = "0x" + "01" * 20
    dec = LogDecoder("dev", {"CarbonCredit": (a, abi("CarbonCredit"))})
    _, log = _transfer_single_log(a)
    broken = [{**log, "logIndex": None, "data": "0x" + "00" * 64 + f"{k:064x}"} for k in range(3)]
    logs = broken + [{**log, "transactionHash": None, "logIndex": None}]
    got = _decode(via, dec, logs, fallback_block=5)
    assert all(isinstance(g, UndecodableLog) for g in got)
    assert len({(g.tx_hash, g.log_index) for g in got}) == 4
    assert got == decode_logs(dec, logs, {}, fallback_block=5)  # the same keys whichever way the logs came


@pytest.mark.parametrize("topics", [None, [], [None], ["0x1234"], ["not hex at all"], [12]])
def test_missing_or_malformed_topic0_is_an_indexing_error(topics):
    a = "0x" + "01" * 20
    dec = LogDecoder("dev", {"CarbonCredit": (a, abi("CarbonCredit"))})
    _, log = _transfer_single_log(a)
    got = dec.decode({**log, "topics": topics}, 0)
    assert isinstance(got, UndecodableLog) and "topic" in got.error


@pytest.mark.parametrize("where,value", [
    ("topic", "0x" + "zz" * 32),  # not hex
    ("topic", "0x" + "00" * 33),  # longer than 32 bytes
    ("topic", "0x" + "00" * 31),  # shorter than 32 bytes
    ("topic", "0x" + "ff" * 12 + "cc" * 20),  # an address topic with non-zero high bytes
    ("topic", " 0x" + "00" * 12 + "cc" * 20),  # whitespace int() would accept
    ("data", "0x" + "0_" * 64),  # underscores int() would accept
    ("data", "0x" + "00" * 64 + "ff" * 32),  # trailing data a static event never has
    ("data", "0x123"),  # odd length
    ("data", None),
])
@pytest.mark.parametrize("via", VIA)
def test_malformed_words_are_refused_not_decoded(where, value, via):
    a = "0x" + "01" * 20
    dec = LogDecoder("dev", {"CarbonCredit": (a, abi("CarbonCredit"))})
    _, log = _transfer_single_log(a)
    ok = _node(dec, [log], typed=True) if via == "node" else [dec.decode(log, 0)]
    assert len(ok) == 1 and isinstance(ok[0], ChainEvent)
    bad = {**log, "topics": log["topics"][:3] + [value]} if where == "topic" else {**log, "data": value}
    got = _decode(via, dec, [bad])
    assert len(got) == 1 and isinstance(got[0], UndecodableLog), got


@pytest.mark.parametrize("typ,word,ok", [
    ("bool", 1, True), ("bool", 2, False), ("uint8", 255, True), ("uint8", 256, False),
    ("int8", 127, True), ("int8", 2**256 - 128, True), ("int8", 128, False), ("int8", 2**256 - 129, False),
    ("bytes4", int("deadbeef" + "00" * 28, 16), True), ("bytes4", 1, False),
])
def test_small_static_types_are_checked_like_the_abi(typ, word, ok):
    item = {"type": "event", "name": "E", "anonymous": False, "inputs": [{"name": "v", "type": typ, "indexed": False}]}
    d = EventDecoder.from_abi("X", item)
    if ok:
        v = d.decode_args([topic0(item)], "0x" + f"{word:064x}")["v"]
        assert v == {"bool": True, "uint8": 255, "bytes4": "0xdeadbeef"}.get(typ, v)
        if typ == "int8":
            assert v in (127, -128)
    else:
        with pytest.raises(Exception, match="range|padding|Padding|neither"):  # ValueError, or eth_abi's DecodingError
            d.decode_args([topic0(item)], "0x" + f"{word:064x}")


def test_generated_decoders_take_any_abi_names_and_types():
    """Static events decode through code generated from the ABI: names are data, never code."""
    names = ["a'); raise SystemExit('", "", 'b"\\n', "from", "x" * 300]
    types = ["address", "uint256", "int16", "bool", "bytes32"]
    rng = seeds.rng(7)
    for k in range(len(names)):
        inputs = [{"name": n, "type": t, "indexed": i < k} for i, (n, t) in enumerate(zip(names, types))]
        inputs.append({"name": "s", "type": "string", "indexed": True})  # hashed topic
        item = {"type": "event", "name": "E", "anonymous": False, "inputs": inputs}
        d = EventDecoder.from_abi("X", item)
        assert d.static and d.extract is not None
        values = {i["name"]: _sample(i["type"], rng) for i in inputs if i["type"] != "string"}
        idx = [i for i in inputs if i["indexed"]]
        data = [i for i in inputs if not i["indexed"]]
        topics = [topic0(item)] + [_topic(i["type"], values[i["name"]]) if i["type"] != "string" else "0x" + "ee" * 32
                                   for i in idx]
        got = d.decode_args(topics, "0x" + encode([i["type"] for i in data], [values[i["name"]] for i in data]).hex())
        assert got == {**{n: _norm(v) for n, v in values.items()}, "s": "0x" + "ee" * 32}


@pytest.mark.parametrize("position", range(4))
def test_generated_decoders_refuse_dirty_address_words_anywhere(position):
    """Every address word of a generated decoder checks its 12 high bytes, indexed or in data; data of the wrong length
    is refused before any word is read."""
    inputs = [{"name": f"a{k}", "type": "address", "indexed": k < 2} for k in range(4)]
    item = {"type": "event", "name": "E", "anonymous": False, "inputs": inputs}
    d = EventDecoder.from_abi("X", item)
    words = [_topic("address", "0x" + f"{k + 1:02x}" * 20) for k in range(4)]
    clean = d.decode_args([topic0(item), *words[:2]], "0x" + "".join(w[2:] for w in words[2:]))
    assert clean == {f"a{k}": "0x" + f"{k + 1:02x}" * 20 for k in range(4)}
    words[position] = "0x" + "00" * 11 + "01" + words[position][26:]
    with pytest.raises(ValueError, match="high bytes"):
        d.decode_args([topic0(item), *words[:2]], "0x" + "".join(w[2:] for w in words[2:]))
    with pytest.raises(ValueError, match="data too"):
        d.decode_args([topic0(item), *words[:2]], "0x" + "".join(w[2:] for w in words[2:]) + "00" * 32)
