"""chains.substrate pure parts: remark records (bounded parsing), accounts, and the mapping of decoded
System.Events + extrinsics onto neutral events (the rules the real-runtime tests exercise end to end)."""

from __future__ import annotations

import json

import pytest

from chains.base import Block, ChainEvent, UndecodableLog
from chains.substrate import records
from chains.substrate.accounts import RETIREMENT_ACCOUNT, public_key
from chains.substrate.mapping import ZERO, BatchInfo, Follow, map_block
from chains.substrate.runtime import blake2_256, compact_u32, storage_key

ALICE = "0x" + "a1" * 32
BOB = "0x" + "b0" * 32
EVE = "0x" + "e0" * 32
FOLLOW = Follow({7: BatchInfo("P-7", 2024, "VM0038", "Verra", "S-7")}, RETIREMENT_ACCOUNT, frozenset({ALICE}))
BLOCK = Block("ah", 42, "0x" + "42" * 32, "0x" + "41" * 32, 1_700_000_000)


# ----------------------------------------------------------------------------------------------- records


def test_record_round_trip_and_domain_separation():
    raw = records.encode("anchor", {"root": "0x" + "AB" * 32, "leafCount": 3, "windowStart": 1, "windowEnd": 2,
                                    "qualityScore": 90, "key": "iot:1"})
    rec = records.parse(raw)
    assert rec.kind == "anchor" and rec.fields["root"] == "0x" + "ab" * 32 and rec.key == "iot:1"
    assert records.parse(b"hello") is None  # somebody else's remark
    # The kind is inside the hashed bytes: the same JSON under another kind is another (here invalid) record.
    with pytest.raises(records.RecordError, match="unknown field"):
        records.parse(raw.replace(b":anchor:", b":retire:"))


@pytest.mark.parametrize("raw, why", [
    (b"carbonledger:1:anchor:" + b" " * 5000, "exceeds"),
    (b"carbonledger:1:burn:{}", "unknown record kind"),
    (b"carbonledger:1:retire", "unknown record kind"),
    (b"carbonledger:1:retire:[1]", "not a JSON object"),
    (b"carbonledger:1:retire:\xff", "not a UTF-8 JSON object"),
    (b'carbonledger:1:retire:{"beneficiary":"a"}', "missing field 'reason'"),
    (b'carbonledger:1:retire:{"beneficiary":"a","reason":"b","x":1}', "unknown field 'x'"),
    (b'carbonledger:1:retire:{"beneficiary":1,"reason":"b"}', "beneficiary must be a string"),
    (b'carbonledger:1:retire:{"beneficiary":"' + b"a" * 300 + b'","reason":"b"}', "beneficiary must be a string"),
    (b'carbonledger:1:mint:{"verificationHash":"0x12"}', "64 hex"),
    (b'carbonledger:1:anchor:{"root":"0x' + b"0" * 64 + b'","leafCount":4294967296,"windowStart":0,"windowEnd":0,'
     b'"qualityScore":1}', "leafCount must be an integer"),
    (b'carbonledger:1:anchor:{"root":"0x' + b"0" * 64 + b'","leafCount":true,"windowStart":0,"windowEnd":0,'
     b'"qualityScore":1}', "leafCount must be an integer"),
])
def test_malformed_records_are_refused_with_a_reason(raw, why):
    with pytest.raises(records.RecordError, match=why):
        records.parse(raw)


def test_accounts_are_public_keys():
    assert public_key("HNZata7iMYWmk5RvZRTiAsSDhV8366zq2YGb3tLH5Upf74F") == \
        "0xd43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d"  # //Alice on prefix 2
    assert public_key("5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY") == \
        "0xd43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d"  # the same key on prefix 42
    assert RETIREMENT_ACCOUNT == "0x" + (b"modlcl/retir").hex() + "00" * 20
    for bad in ("0x12", "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQZ", "x" * 100):
        with pytest.raises(ValueError):
            public_key(bad)


def test_scale_helpers():
    assert storage_key("System", "Events") == "0x26aa394eea5630e07c48ae0c9558cef780d41e5e16056765bc8461851072c9d7"
    assert compact_u32(bytes.fromhex("110e")) == 900 and compact_u32(b"\x04") == 1
    with pytest.raises(ValueError):
        compact_u32(b"")


# ----------------------------------------------------------------------------------------------- mapping


class Decoded:
    """Stands for a Runtime's extrinsic decoder: the body entries here are keys into decoded call trees."""

    def __init__(self, bodies: dict[str, dict]) -> None:
        self.bodies = bodies

    def decode_extrinsic(self, raw: str) -> dict:
        if raw not in self.bodies:
            raise ValueError("extrinsic does not decode")
        return self.bodies[raw]


def remark(raw: bytes) -> dict:
    return {"call_module": "System", "call_function": "remark_with_event",
            "call_args": [{"name": "remark", "value": raw.decode() if raw.isascii() else "0x" + raw.hex()}]}


def batch(*calls: dict) -> dict:
    return {"call_module": "Utility", "call_function": "batch_all", "call_args": [{"name": "calls", "value": list(calls)}]}


def ev(idx: int, module: str, name: str, **attrs) -> dict:
    return {"phase": "ApplyExtrinsic", "extrinsic_idx": idx, "module_id": module, "event_id": name,
            "attributes": attrs or None}


def remarked(idx: int, sender: str, raw: bytes) -> dict:
    return ev(idx, "System", "Remarked", sender=sender, hash="0x" + blake2_256(raw).hex())


def run(events: list[dict], calls: list[dict], signers: list[str]) -> list[ChainEvent | UndecodableLog]:
    body = [f"0x{i:02x}{i:02x}" for i in range(len(calls))]
    rt = Decoded({b: {"address": s, "call": c} for b, c, s in zip(body, calls, signers)})
    return map_block("ah", BLOCK, events, body, rt, FOLLOW)


RETIRE = records.encode("retire", {"beneficiary": "Bob's school", "reason": "2025 commute"})


def test_holder_signed_retirement_carries_its_record():
    out = run([ev(0, "Assets", "Transferred", asset_id=7, **{"from": BOB, "to": RETIREMENT_ACCOUNT, "amount": 5}),
               remarked(0, BOB, RETIRE)],
              [batch({"call_module": "Assets", "call_function": "transfer"}, remark(RETIRE))], [BOB])
    assert [(e.name, e.log_index) for e in out] == [("TransferSingle", 0), ("Retired", 0)]
    move, cert = out
    assert move.args == {"operator": BOB, "from": BOB, "to": ZERO, "id": 7, "value": 5}
    assert cert.args == {"certificateId": 42 << 32, "holder": BOB, "batchId": 7, "amount": 5,
                         "beneficiary": "Bob's school", "reason": "2025 commute"}
    assert cert.tx_hash == "0x" + blake2_256(bytes.fromhex("0000")).hex() and cert.tx_index == 0


def test_a_retire_record_from_someone_else_does_not_name_the_beneficiary():
    out = run([ev(0, "Assets", "TransferredApproved", asset_id=7, owner=BOB, delegate=EVE,
                  destination=RETIREMENT_ACCOUNT, amount=5), remarked(0, EVE, RETIRE)],
              [batch(remark(RETIRE))], [EVE])
    assert out[1].name == "Retired" and (out[1].args["beneficiary"], out[1].args["reason"]) == ("", "")
    assert out[0].args["operator"] == EVE


def test_burns():
    # the admin burns with a record: a retirement on the holder's behalf; a plain burn: only a ledger burn;
    # a burn of the retirement account: nothing (those credits were retired on arrival)
    out = run([ev(0, "Assets", "Burned", asset_id=7, owner=BOB, balance=3), remarked(0, ALICE, RETIRE),
               ev(1, "Assets", "Burned", asset_id=7, owner=BOB, balance=4),
               ev(2, "Assets", "Burned", asset_id=7, owner=RETIREMENT_ACCOUNT, balance=9)],
              [batch(remark(RETIRE)), {}, {}], [ALICE, ALICE, ALICE])
    assert [(e.name, e.log_index, e.args.get("value", e.args.get("amount"))) for e in out] == \
        [("TransferSingle", 0, 3), ("Retired", 0, 3), ("TransferSingle", 2, 4)]


def test_mint_with_verification_record_and_batch_creation():
    vh = "0x" + "11" * 32
    rec = records.encode("mint", {"verificationHash": vh})
    out = run([ev(0, "Assets", "Created", asset_id=7, creator=ALICE, owner=ALICE),
               ev(1, "Assets", "Issued", asset_id=7, owner=BOB, total_supply=2**127), remarked(1, ALICE, rec),
               ev(2, "Assets", "Issued", asset_id=8, owner=BOB, total_supply=1)],  # asset 8: not ours
              [{}, batch(remark(rec)), {}], [ALICE, ALICE, ALICE])
    assert [e.name for e in out] == ["BatchCreated", "TransferSingle", "Minted"]
    assert out[0].args["projectId"] == "P-7" and out[0].args["batchId"] == 7
    assert out[2].args == {"to": BOB, "batchId": 7, "amount": 2**127, "verificationHash": vh}  # exact u128


def test_anchors_only_from_anchoring_accounts():
    rec = records.encode("anchor", {"root": "0x" + "cd" * 32, "leafCount": 2, "windowStart": 1, "windowEnd": 2,
                                    "qualityScore": 80})
    out = run([remarked(0, ALICE, rec), remarked(1, EVE, rec)], [remark(rec), remark(rec)], [ALICE, EVE])
    assert [(e.name, e.args["anchorId"]) for e in out] == [("Anchored", 42 << 32 | 0)]


def test_bad_input_becomes_indexing_errors_not_exceptions():
    bad = b'carbonledger:1:anchor:{"root":1}'
    out = run([remarked(0, ALICE, bad),  # malformed record from the anchoring account
               remarked(1, ALICE, b"other bytes"),  # a hash matching no remark in its extrinsic
               ev(2, "Assets", "Transferred", asset_id=9, **{"from": BOB, "to": RETIREMENT_ACCOUNT, "amount": 1}),
               ev(3, "Assets", "Transferred", asset_id=7, **{"from": BOB, "to": "nonsense", "amount": 1}),
               remarked(4, EVE, bad),  # somebody else's junk: not ours, not an error
               remarked(5, ALICE, RETIRE)],  # in an extrinsic that does not decode
              [remark(bad), remark(b"x"), {}, {}, remark(bad)], [ALICE, ALICE, BOB, BOB, EVE])
    assert all(isinstance(e, UndecodableLog) for e in out)
    msgs = [(e.log_index, e.error) for e in out]
    assert [i for i, _ in msgs] == [0, 1, 2, 3, 5]
    assert "malformed carbonledger record: anchor: missing field" in msgs[0][1]
    assert "no remark in extrinsic 42-1" in msgs[1][1]
    assert "asset 9 is not a credit batch" in msgs[2][1]
    assert "not a 32-byte account" in msgs[3][1]
    assert "not in the block body" in msgs[4][1]


def test_a_body_that_is_not_hex_is_an_error_not_an_exception():
    out = map_block("ah", BLOCK, [ev(0, "Assets", "Issued", asset_id=7, owner=BOB, total_supply=1),
                                  remarked(0, ALICE, RETIRE)], ["0xzz"], Decoded({}), FOLLOW)
    assert [type(e).__name__ for e in out] == ["ChainEvent", "ChainEvent", "UndecodableLog"]
    assert "not 0x-hex" in out[2].error and out[0].tx_hash == BLOCK.hash


def test_events_outside_extrinsics_are_keyed_by_block_hash():
    rec = {"phase": "Finalization", "module_id": "Assets", "event_id": "Issued",
           "attributes": {"asset_id": 7, "owner": BOB, "total_supply": 1}}
    out = map_block("ah", BLOCK, [rec], [], None, FOLLOW)
    assert [(e.name, e.tx_hash, e.tx_index) for e in out] == [("TransferSingle", BLOCK.hash, None),
                                                              ("Minted", BLOCK.hash, None)]


def test_record_json_is_canonical():
    raw = records.encode("retire", {"reason": "b", "beneficiary": "a"})
    assert raw == b'carbonledger:1:retire:{"beneficiary":"a","reason":"b"}'
    assert json.loads(raw.split(b":", 3)[3]) == {"beneficiary": "a", "reason": "b"}


def test_the_api_takes_substrate_accounts_as_stored():
    from gqlapi.convert import address_arg
    from gqlapi.errors import UserError

    key = "0xd43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d"
    assert address_arg("HNZata7iMYWmk5RvZRTiAsSDhV8366zq2YGb3tLH5Upf74F", "owner") == key
    assert address_arg(key.upper().replace("0X", "0x"), "owner") == key
    for bad in ("HNZata7iMYWmk5RvZRTiAsSDhV8366zq2YGb3tLH5Upf74G", "0x" + "ab" * 31, "x" * 200):
        with pytest.raises(UserError, match="not a 0x-prefixed 20-byte hex address"):
            address_arg(bad, "owner")
