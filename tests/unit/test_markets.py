"""Existing carbon markets: the shipped event ABIs against the published topic index, the stand-ins against the
shipped ABIs, every event with a handler, config validation, batch ids, registry serial ranges, decoding."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_abi import encode

from chains.base import ChainEvent
from chains.evm.artifacts import abi
from chains.evm.decode import LogDecoder, event_signature, topic0
from chains.evm.markets import external_batch_id, market_protocols, split_batch_id
from core.config import ConfigError, load_settings
from tests import seeds

ROOT = Path(__file__).resolve().parents[2]
STAND_INS = {"toucan_tco2": "StandInTCO2", "toucan_certificates": "StandInRetirementCertificates",
             "icr_project": "StandInICRProject", "klima_infinity": "StandInKlimaInfinity",
             "carbonmark": "StandInCarbonmark"}


def _events(items):
    return {(event_signature(i), tuple(x["name"] for x in i["inputs"] if x.get("indexed"))) for i in items
            if i.get("type") == "event"}


def test_shipped_market_abis_match_the_topic_index(fixtures_dir):
    index = json.loads((fixtures_dir / "carbon-abis" / "event_topics_index.json").read_text())["events"]
    published = {(e["signature"], e["topic0"], tuple(e["indexed"])) for e in index}
    protocols = market_protocols()
    assert set(protocols) == set(STAND_INS)
    for name, doc in protocols.items():
        assert "MIT" in doc["source"] and doc["abi"], name
        for item in doc["abi"]:
            ours = (event_signature(item), topic0(item), tuple(i["name"] for i in item["inputs"] if i.get("indexed")))
            assert ours in published, (name, ours)
    assert (ROOT / "abis" / "markets" / "LICENSE.klima-subgraph").is_file()


@pytest.mark.parametrize("protocol", sorted(STAND_INS))
def test_stand_ins_emit_exactly_the_shipped_events(protocol):
    """Same signatures, same indexed fields: what the tests deploy is what the real contracts emit."""
    shipped = _events(market_protocols()[protocol]["abi"])
    assert shipped <= _events(abi(STAND_INS[protocol]))


def test_every_market_event_has_a_handler_and_every_handler_an_event():
    from indexer.registry import load_handlers

    handlers = load_handlers()
    keys = {f"{doc['contract']}:{i['name']}" for doc in market_protocols().values() for i in doc["abi"]}
    assert keys <= set(handlers)
    contracts = {doc["contract"] for doc in market_protocols().values()}
    assert {k for k in handlers if k.split(":")[0] in contracts} == keys


GOOD = """
[chains.polygon]
rpc_url = "http://127.0.0.1:8545"
[[chains.polygon.markets]]
protocol = "toucan_tco2"
address = "0x463de2a5c6e8bb0c87f4aa80a02689e6680f72c7"
start_block = 100
[[chains.polygon.markets]]
protocol = "carbonmark"
address = "0x7b51dbc2a8fd98fe0924416e628d5755f57eb821"
"""


def _load(tmp_path, text):
    p = tmp_path / "c.toml"
    p.write_text(text)
    return load_settings(p)


def test_markets_config_is_validated(tmp_path, monkeypatch):
    from chains.evm.markets import resolved_markets

    for k in list(__import__("os").environ):
        if k.startswith("CARBONLEDGER_"):
            monkeypatch.delenv(k)
    s = _load(tmp_path, GOOD)
    got = resolved_markets(s.chains["polygon"], "polygon")
    assert [(c, a, b) for c, a, b, _ in got] == [
        ("ToucanCarbonOffsets", "0x463de2a5c6e8bb0c87f4aa80a02689e6680f72c7", 100),
        ("Carbonmark", "0x7b51dbc2a8fd98fe0924416e628d5755f57eb821", 0)]
    bad = _load(tmp_path, GOOD.replace('"carbonmark"', '"carbonmarket"'))
    with pytest.raises(ConfigError, match=r"chains\.polygon\.markets\[1\]\.protocol: unknown market protocol "
                                          r"'carbonmarket' \(known: carbonmark, icr_project, klima_infinity, "):
        resolved_markets(bad.chains["polygon"], "polygon")
    for text, match in (
        (GOOD.replace("0x7b51dbc2a8fd98fe0924416e628d5755f57eb821", "0x463de2a5c6e8bb0c87f4aa80a02689e6680f72c7"),
         "listed twice"),
        (GOOD.replace("0x7b51dbc2a8fd98fe0924416e628d5755f57eb821", "0x7b51"), "not an EVM address"),
        (GOOD.replace('"carbonmark"', '"Carbon Mark"'), "markets.1.protocol"),
        (GOOD.replace("start_block = 100", "start_block = 100\nadress = 1"), "adress"),
        (GOOD.replace('rpc_url = "http://127.0.0.1:8545"', 'rpc_url = "http://127.0.0.1:8545"\nfamily = "substrate"'),
         "markets does not apply"),
    ):
        with pytest.raises(ConfigError, match=match):
            _load(tmp_path, text)
    ours = _load(tmp_path, GOOD + '[chains.polygon.contracts.CarbonCredit]\naddress = '
                 '"0x463de2a5c6e8bb0c87f4aa80a02689e6680f72c7"\n')
    with pytest.raises(ConfigError, match=r"markets\[0\]\.address: .* is also a carbonledger contract"):
        resolved_markets(ours.chains["polygon"], "polygon")
    label = '\n[chains.polygon.markets.batches.{id}]\nproject_id = "VCS-1"\nvintage = 2020\ndecimals = 18\n'
    tco2 = GOOD.replace("start_block = 100\n", "start_block = 100" + label.format(id=0), 1)
    from chains.evm.markets import batch_labels

    labels = batch_labels(_load(tmp_path, tco2).chains["polygon"])
    assert labels == {int("0x463de2a5c6e8bb0c87f4aa80a02689e6680f72c7", 16) << 96: {
        "project_id": "VCS-1", "vintage": 2020, "methodology": "", "registry": "", "serial_number": "",
        "metadata_hash": "0x" + "0" * 64, "unit": 10**18}}
    for text, match in ((GOOD.replace("start_block = 100\n", "start_block = 100" + label.format(id=5), 1),
                         r"markets\[0\]\.batches\.5: an ERC-20 \(one token per contract\) has only token id 0"),
                        (GOOD + label.format(id=0), r"markets\[1\]\.batches\.0: carbonmark is not a token contract")):
        with pytest.raises(ConfigError, match=match):
            resolved_markets(_load(tmp_path, text).chains["polygon"], "polygon")


def test_external_batch_ids_are_reversible_and_disjoint_from_ours():
    tco2 = "0x463de2a5c6e8bb0c87f4aa80a02689e6680f72c7"
    assert split_batch_id(external_batch_id(tco2)) == (tco2, 0)
    assert split_batch_id(external_batch_id(tco2, 7)) == (tco2, 7)
    assert split_batch_id(42) == (None, 42)
    assert external_batch_id(tco2, 2**96 - 1) < 2**256
    with pytest.raises(ValueError, match="does not fit"):
        external_batch_id(tco2, 2**96)


def test_serial_ranges_are_consumed_first_in_first_out():
    from store.serials import consumed_range, parse_range

    s = "VCS-VCU-263-VER-KE-14-1529-01012020-31122020-1001-1100"
    assert parse_range(s) == ("VCS-VCU-263-VER-KE-14-1529-01012020-31122020", 1001, 1100)
    assert consumed_range(s, 0, 30) == "VCS-VCU-263-VER-KE-14-1529-01012020-31122020-1001-1030"
    assert consumed_range(s, 30, 70) == "VCS-VCU-263-VER-KE-14-1529-01012020-31122020-1031-1100"
    assert consumed_range(s, 30, 71) is None  # past the end of the range
    for bad in ("", None, "VCS-1-100x", "VCS-100-1", "X" * 300, "1-2"):
        assert consumed_range(bad, 0, 1) is None
    e18 = 10**18  # an 18-decimals token: one serial per 10**18 units; fractional retirements cover their serials
    assert consumed_range("V-1-10", 0, e18, e18) == "V-1-1"
    assert consumed_range("V-1-10", e18, e18 // 2, e18) == "V-2-2"
    assert consumed_range("V-1-10", e18 + e18 // 2, e18, e18) == "V-2-3"
    assert consumed_range("V-1-10", 9 * e18, e18 + 1, e18) is None


def _log(address, item, values, index=3):
    idx = [i for i in item["inputs"] if i.get("indexed")]
    data = [i for i in item["inputs"] if not i.get("indexed")]

    def topic(t, v):
        return "0x" + encode([t], [v]).hex()

    return {"address": address, "topics": [topic0(item)] + [topic(i["type"], values[i["name"]]) for i in idx],
            "data": "0x" + encode([i["type"] for i in data], [values[i["name"]] for i in data]).hex(),
            "blockNumber": "0x10", "blockHash": "0x" + "11" * 32, "transactionHash": "0x" + "22" * 32,
            "logIndex": hex(index)}


def test_both_abi_versions_decode_under_one_event_name_for_every_address():
    """Two TCO2s share one decoder set; Retired v1 and v1.4, CarbonRetired with and without tokenId decode by
    topic0 to one handler key, with their own argument names."""
    protocols = market_protocols()
    t1, t2, k = "0x" + "01" * 20, "0x" + "02" * 20, "0x" + "03" * 20
    dec = LogDecoder("dev", {}, [("ToucanCarbonOffsets", t1, protocols["toucan_tco2"]["abi"]),
                                 ("ToucanCarbonOffsets", t2, protocols["toucan_tco2"]["abi"]),
                                 ("KlimaInfinity", k, protocols["klima_infinity"]["abi"])])
    rng = seeds.rng(5)
    who = "0x" + "ab" * 20
    seen = []
    for address, doc in ((t1, "toucan_tco2"), (t2, "toucan_tco2"), (k, "klima_infinity")):
        for item in protocols[doc]["abi"]:
            values = {}
            for i in item["inputs"]:
                values[i["name"]] = {"address": who, "string": "Acme", "uint8": 3}.get(i["type"], rng.randrange(2**64))
            ev = dec.decode(_log(address, item, values), 99)
            assert isinstance(ev, ChainEvent) and ev.address == address
            assert dict(ev.args) == values
            seen.append((ev.key, len(ev.args)))
    assert ("ToucanCarbonOffsets:Retired", 2) in seen and ("ToucanCarbonOffsets:Retired", 3) in seen
    assert ("KlimaInfinity:CarbonRetired", 9) in seen and ("KlimaInfinity:CarbonRetired", 10) in seen
    with pytest.raises(ValueError, match="followed twice"):
        LogDecoder("dev", {}, [("A", t1, []), ("B", t1, [])])


def test_a_failing_market_handler_leaves_no_trace():
    """Klima's annotation amends a buffered certificate; if the handler then fails, the row is as it was."""
    from indexer.context import Context, StateCache
    from indexer.registry import load_handlers
    from indexer.tables import EVENTS

    h = load_handlers()
    tco2, who = "0x" + "01" * 20, "0x" + "a1" * 20

    def ev(contract, name, idx, address, **args):
        return ChainEvent("dev", contract, name, args, 7, "0x" + "77" * 32, 1000, "0x" + "99" * 32, idx, address)

    ctx = Context("dev", StateCache(), {})
    ctx.apply_event(h["ToucanCarbonOffsets:Transfer"], ev("ToucanCarbonOffsets", "Transfer", 0, tco2,
                                                          **{"from": "0x" + "0" * 40, "to": who, "value": 5}))
    ctx.apply_event(h["ToucanCarbonOffsets:Retired"], ev("ToucanCarbonOffsets", "Retired", 1, tco2, sender=who, tokenId=2))
    row = ctx.rows["retirement"][0]
    before = list(row)
    cols = EVENTS["retirement"].columns
    assert (row[cols.index("certificate_id")], row[cols.index("amount")]) == (7 << 32 | 1, 2)
    klima = ev("KlimaInfinity", "CarbonRetired", 2, "0x" + "03" * 20, carbonBridge=0, retiringAddress=who,
               retiringEntityString="", beneficiaryAddress=who, beneficiaryString="Acme", retirementMessage="m",
               carbonPool="0x" + "0" * 40, carbonToken=tco2, retiredAmount=2)

    def failing(e, c):
        h["KlimaInfinity:CarbonRetired"](e, c)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        ctx.apply_event(failing, klima)
    assert row == before
    ctx.apply_event(h["KlimaInfinity:CarbonRetired"], klima)
    assert (row[cols.index("beneficiary")], row[cols.index("reason")]) == ("Acme", "m")
    assert len(ctx.rows["retirement"]) == 1


def test_tx_rows_follow_inserts_and_rollbacks():
    from indexer.context import Context, StateCache

    ctx = Context("dev", StateCache(), {})

    def ev(tx, idx):
        return ChainEvent("dev", "X", "Y", {}, 1, "0x" + "11" * 32, 0, tx, idx, "0x00")

    def ins(e, c):
        c.insert("trade", e, listing_id=1, auction_id=None, buyer="0x", seller="0x", batch_id=1, amount=1, price_per_unit=1,
                 payment_ref=None)

    ctx.apply_event(ins, ev("0xa", 0))
    ctx.apply_event(ins, ev("0xb", 1))

    def failing(e, c):
        ins(e, c)
        raise RuntimeError

    with pytest.raises(RuntimeError):
        ctx.apply_event(failing, ev("0xa", 2))
    assert [r[2] for r in ctx.tx_rows("trade", ev("0xa", 9))] == [0]
    assert ctx.tx_rows("trade", ev("0xa", 0)) == [] and len(ctx.rows["trade"]) == 2
