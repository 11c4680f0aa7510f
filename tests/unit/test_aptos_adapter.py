"""The Aptos adapter on its own: Move JSON values parsed exactly (on the goldens' real values too) and malformed
ones refused as indexing errors; the reader's pagination edges (clamped limit, start at the tip, past it, pruned);
the writer's answers (Move abort decoded, maybe-sent, rejected, mempool full, dropped after expiry and re-signed)."""

from __future__ import annotations

import copy

import pytest

from chains.aptos.mapping import ZERO, Follow, map_transaction
from chains.aptos.reader import AptosReader, Pruned
from chains.aptos.values import MoveValueError, address, parse, parse_struct
from chains.aptos.writer import MempoolFull, decode_abort
from chains.base import ChainEvent, MaybeSent, Rejected, TxRequest, TxState, UndecodableLog
from chains.rpc import RpcError
from tests.unit.aptos_fixtures import aptos, golden, send  # noqa: F401 - fixture


def test_values_parse_exactly():
    assert parse("u64", "18446744073709551615") == 2**64 - 1
    assert parse("u128", str(2**128 - 1)) == 2**128 - 1
    assert parse("u256", str(2**256 - 1)) == 2**256 - 1
    assert parse("u16", 2021) == 2021
    assert address("0x1") == "0x" + "0" * 63 + "1"
    assert parse("address", "0xA550C18") == "0x" + "0" * 57 + "a550c18"
    assert parse("vector<u8>", "0xABcd") == "0xabcd"
    assert parse("0x1::option::Option<u64>", {"vec": []}) is None
    assert parse("0x1::option::Option<u64>", {"vec": ["7"]}) == 7
    assert parse("vector<address>", ["0x1", "0x2"]) == [address("0x1"), address("0x2")]
    assert parse("0x1::object::Object<0x1::fungible_asset::Metadata>", {"inner": "0xa"}) == address("0xa")
    # the goldens' real values: a FeeStatement, an Option in an account resource, a NewBlockEvent
    fee = golden("transactions_test__test_get_txn_execute_failed_by_missing_entry_function_arguments")["events"][0]["data"]
    assert parse_struct(tuple((k, "u64") for k in fee), fee)["total_charge_gas_units"] == 3
    acct = golden("state_test__test_get_account_resource")["data"]
    assert parse("0x1::option::Option<address>", acct["rotation_capability_offer"]["for"]) is None
    assert parse("address", acct["coin_register_events"]["guid"]["id"]["addr"]) == address("0xa550c18")
    page = golden("transactions_test__test_get_transactions_output_user_transaction_with_entry_function_payload")
    nb = page[0]["events"][0]["data"]
    assert parse("u64", nb["time_microseconds"]) == 500000 and parse("vector<u64>", nb["failed_proposer_indices"]) == []


@pytest.mark.parametrize("t,v", [
    ("u64", 5), ("u64", "5.0"), ("u64", "-1"), ("u64", "18446744073709551616"), ("u64", "0x10"), ("u64", "01"),
    ("u64", 1e3), ("u8", "5"), ("u8", 256), ("u16", True), ("u128", str(2**128)), ("bool", "true"),
    ("address", "0x" + "1" * 65), ("address", "1"), ("address", "0xzz"), ("address", 1),
    ("vector<u8>", "0xabc"), ("vector<u8>", [1, 2]), ("vector<u8>", "ab"),
    ("0x1::option::Option<u64>", {"vec": ["1", "2"]}), ("0x1::option::Option<u64>", []),
    ("0x1::option::Option<u64>", {"vec": [], "x": 1}), ("0x1::string::String", "x" * 5000),
    ("vector<u64>", ["1"] * 2000), ("0x1::table::Table<u64,u64>", {}),
])
def test_malformed_values_are_refused(t, v):
    with pytest.raises(MoveValueError):
        parse(t, v)


def _tx(pkg: str, events: list, **kw) -> dict:
    return {"version": "9", "hash": "0x" + "ee" * 32, "timestamp": "2000000", "sender": "0xa11ce", "success": True,
            "type": "user_transaction", "events": events, **kw}


def _ev(t: str, data: dict) -> dict:
    return {"guid": {"creation_number": "0", "account_address": "0x0"}, "sequence_number": "0", "type": t, "data": data}


def test_mapping_events_and_malformed_event_is_an_indexing_error():
    pkg = address("0xc0ffee")
    f = Follow(pkg)
    short = "0xc0ffee"
    minted = _ev(f"{short}::carbon_credit::Minted", {"batch_id": "1", "to": "0xb0b", "amount": "18446744073709551615",
                                                     "verification_hash": "0x" + "11" * 32})
    bad = _ev(f"{short}::carbon_credit::Retired", {"certificate_id": "1", "holder": "0xb0b", "batch_id": "1",
                                                   "amount": 3.5, "beneficiary": "x", "reason": "y"})
    missing = _ev(f"{short}::marketplace::Cancelled", {"listing_id": "1"})
    other = _ev("0xdead::carbon_credit::Minted", {"whatever": 1})  # another package's struct of the same name
    fee = golden("transactions_test__test_get_txn_execute_failed_by_missing_entry_function_arguments")["events"][0]
    out = map_transaction("aptos", _tx(pkg, [minted, bad, missing, other, fee]), f)
    evs = [e for e in out if isinstance(e, ChainEvent)]
    errs = [e for e in out if isinstance(e, UndecodableLog)]
    assert [e.key for e in evs] == ["CarbonCredit:TransferSingle", "CarbonCredit:Minted"]
    assert evs[0].args == {"operator": address("0xa11ce"), "from": ZERO, "to": address("0xb0b"), "id": 1,
                           "value": 2**64 - 1}
    assert evs[1].position == (9, 0) and evs[1].block_timestamp == 2 and evs[1].address == pkg + "::carbon_credit"
    assert [(e.log_index, e.contract) for e in errs] == [(1, "CarbonCredit"), (2, "Marketplace")]
    assert "amount: u64 is not a decimal string" in errs[0].error and "missing" in errs[1].error


def test_fungible_asset_deposit_withdraw_followed_for_configured_assets():
    meta, alice, bob, s1, s2 = (address(x) for x in ("0xfa", "0xa1", "0xb2", "0x51", "0x52"))
    f = Follow(address("0xc0ffee"), {meta: 7})

    def store(at: str, owner: str) -> list:
        return [{"address": at, "state_key_hash": "", "type": "write_resource", "data": {
                    "type": "0x1::fungible_asset::FungibleStore",
                    "data": {"metadata": {"inner": meta}, "balance": "5", "frozen": False}}},
                {"address": at, "state_key_hash": "", "type": "write_resource", "data": {
                    "type": "0x1::object::ObjectCore", "data": {"owner": owner, "allow_ungated_transfer": False,
                                                                "guid_creation_num": "1", "transfer_events": {}}}}]

    tx = _tx("", [_ev("0x1::fungible_asset::Withdraw", {"store": s1, "amount": "5"}),
                  _ev("0x1::fungible_asset::Deposit", {"store": s2, "amount": "5"}),
                  _ev("0x1::fungible_asset::Deposit", {"store": s2, "amount": "2"}),
                  _ev("0x1::fungible_asset::Deposit", {"store": "0x99", "amount": "2"})],  # another asset's store
             changes=store(s1, alice) + store(s2, bob))
    out = map_transaction("aptos", tx, f)
    assert [(e.log_index, e.args["from"], e.args["to"], e.args["value"], e.args["id"]) for e in out] == [
        (1, alice, bob, 5, 7), (2, ZERO, bob, 2, 7)]
    tx["events"].append(_ev("0x1::fungible_asset::Withdraw", {"store": s1, "amount": "-1"}))
    assert isinstance(map_transaction("aptos", tx, f)[-1], UndecodableLog)


def test_decode_abort_from_node_text_or_interface():
    a = decode_abort(golden("transactions_test__test_get_transaction_by_hash_with_delayed_internal_indexer")["vm_status"])
    assert (a.module, a.name, a.code) == ("0x1::fungible_asset", "EINSUFFICIENT_BALANCE", 0x10004)
    from chains.aptos.interface import load_interface

    b = decode_abort("Move abort in 0xc0ffee::marketplace: 0x80003", load_interface())
    assert (b.name, b.code, b.doc) == ("E_PAYMENT_REF_USED", 0x80003, "This payment reference settled an earlier sale.")
    assert decode_abort("LINKER_ERROR") is None


def test_reader_pagination_edges(aptos):
    w = aptos
    for _ in range(60):  # 60 empty blocks of 2 versions after the first: 122 versions, more than one clamped page
        w.node.commit()
    r = AptosReader("aptos", w.url, Follow(address(w.package)))
    tip = r.tip()
    assert tip == w.node.ledger_version == 121
    before = len(w.node.requests)
    rows = r._scan(0, tip)
    assert [int(t["version"]) for t in rows] == list(range(tip + 1))
    pages = [p for m, p in w.node.requests[before:] if p == "/v1/transactions"]
    assert len(pages) == 2  # 100 (the clamp) + 22, advancing by the rows returned
    w.node.page_limit = 7  # a node that answers fewer rows than asked
    r._seen.clear()
    assert [int(t["version"]) for t in r._scan(50, 80)] == list(range(50, 81))
    assert r.block(tip).number == tip and r.block(tip + 1) is None  # never asks past the tip
    assert r.block(tip).parent_hash == r.block(tip - 1).hash
    assert r.head().number == tip and r.finalized(r.head(), 12) == tip
    asked = [p for m, p in w.node.requests if p == "/v1/transactions"]
    with pytest.raises(RpcError):
        r.events(tip, tip + 5)  # the range's end is past the tip: refused, not asked
    assert [p for m, p in w.node.requests if p == "/v1/transactions"][len(asked):] == ["/v1/transactions"]
    w.node.prune(30)
    r._seen.clear()
    with pytest.raises(Pruned, match="version 10 is pruned"):
        r.events(10, 20)
    assert r.block(0) is None and r.block(30).parent_hash == "0x" + "0" * 64  # parent pruned
    assert [e for e in r.events(30, tip)] == []


def test_writer_outcomes(aptos):
    w = aptos
    admin, oracle = w.writer["admin"], w.writer["oracle"]
    assert send(admin, "carbon_credit", "create_batch", "P", 2020, "M", "R", "S", "0x" + "ab" * 32).state is TxState.MINED
    alice = w.alice.address()
    assert send(admin, "CarbonCredit", "mint", str(alice), 1, 10, "0x" + "01" * 32).state is TxState.MINED
    assert send(w.writer["alice"], "Marketplace", "list", 1, 10, 3).state is TxState.MINED
    settle = TxRequest("aptos", "Marketplace", "settleOffchain", ("1", str(w.bob.address()), "2", "pi_1"))
    assert oracle.precheck(settle) is None and not oracle.already_done(settle)
    assert send(oracle, *("Marketplace", "settleOffchain"), *settle.args).state is TxState.MINED
    assert oracle.already_done(settle)  # the /v1/view pre-check
    assert "E_PAYMENT_REF_USED(0x80003)" in oracle.precheck(settle)
    again = send(oracle, "Marketplace", "settleOffchain", *settle.args)  # sent anyway: committed as failed
    assert again.state is TxState.REVERTED and again.error.startswith(
        f"Move abort in 0x{w.package[2:].lstrip('0')}::marketplace: E_PAYMENT_REF_USED(0x80003): ")

    # rejected, maybe-sent and mempool-full answers
    w.node.auto_commit = False
    n = oracle.next_nonce()
    req = TxRequest("aptos", "IoTAnchor", "anchor", ("0x" + "aa" * 32, 3, 1, 2, 90))
    h, raw = oracle.sign(req, n)
    assert oracle.submit(raw[:-1] + bytes([raw[-1] ^ 1])).__class__ is Rejected  # invalid signature
    assert oracle.submit(raw) == h and oracle.status(h).state is TxState.PENDING
    assert oracle.submit(raw) == h  # the same bytes again: accepted (idempotent)
    _, other = oracle.sign(TxRequest("aptos", "IoTAnchor", "anchor", ("0x" + "bb" * 32, 3, 1, 2, 90)), n)
    assert isinstance(oracle.submit(other), MaybeSent)  # invalid_transaction_update: this number is taken
    w.node.mempool_capacity = 1
    _, full = admin.sign(req, admin.next_nonce())
    assert isinstance(oracle.submit(full), MempoolFull)
    w.node.mempool_capacity = 1000
    w.node.commit()
    assert oracle.status(h).state is TxState.MINED
    assert isinstance(oracle.submit(other), MaybeSent)  # SEQUENCE_NUMBER_TOO_OLD: used (by this intent's write)

    # dropped after expiry: the ledger's time passes the expiration without it; the same intent, signed again
    now = [w.node.clock()]
    w.node.clock = lambda: now[0]
    n = oracle.next_nonce()
    req2 = TxRequest("aptos", "IoTAnchor", "anchor", ("0x" + "cc" * 32, 3, 1, 2, 90))
    h1, raw1 = oracle.sign(req2, n, {"expiration": int(now[0]) + 5})
    assert oracle.submit(raw1) == h1
    now[0] += 10
    w.node.commit()  # a block after its expiration: the mempool drops it
    assert oracle.status(h1).state is TxState.UNKNOWN
    assert not oracle.already_done(req2)
    h2, raw2 = oracle.sign(req2, n, {"expiration": int(now[0]) + 30})
    assert h2 != h1 and oracle.submit(raw2) == h2
    w.node.commit()
    assert oracle.status(h2).state is TxState.MINED and oracle.already_done(req2)


def test_only_successful_user_transactions_are_read_unknown_types_skipped():
    pkg = address("0xc0ffee")
    r = AptosReader.__new__(AptosReader)
    r.chain, r.follow = "aptos", Follow(pkg)
    ev = _ev("0xc0ffee::iot_verification::Anchored", {"anchor_id": "1", "root": "0x" + "aa" * 32, "leaf_count": "2",
                                                      "window_start": "0", "window_end": "1", "quality_score": "9"})
    ok = _tx(pkg, [ev])
    failed = {**_tx(pkg, [ev]), "version": "10", "success": False}
    future = {**_tx(pkg, [ev]), "version": "11", "type": "some_future_transaction"}
    genesis = {**_tx(pkg, [ev]), "version": "12", "type": "genesis_transaction"}
    out = r.decode([ok, failed, future, genesis])
    assert [(e.block_number, e.key) for e in out] == [(9, "IoTAnchor:Anchored")]
    assert out[0].args == {"anchorId": 1, "root": "0x" + "aa" * 32, "leafCount": 2, "windowStart": 0, "windowEnd": 1,
                           "qualityScore": 9}


def test_addresses_with_leading_zeros_everywhere(aptos):
    """A package (or account) address whose hex starts with zeros is rendered short by the node ("0x38f…") and full
    by the writer ("0x038f…"): both name the same account in views, events and entry functions."""
    from aptos_sdk.account import Account

    from chains.aptos.standin import StandInNode
    from chains.aptos.writer import AptosWriter

    admin = next(a for a in iter(Account.generate, None) if str(a.address())[2] == "0")
    node = StandInNode(str(admin.address()))
    url = node.start()
    try:
        node.grant("oracle", str(admin.address()))
        w = AptosWriter("aptos", url, admin, str(admin.address()))
        req = TxRequest("aptos", "IoTAnchor", "anchor", ("0x" + "ee" * 32, 1, 0, 1, 5))
        assert not w.already_done(req) and w.precheck(req) is None
        assert send(w, "IoTAnchor", "anchor", *req.args).state is TxState.MINED and w.already_done(req)
        r = AptosReader("aptos", url, Follow(address(str(admin.address()))))
        assert [e.key for e in r.events(0, r.tip())] == ["IoTAnchor:Anchored"]
    finally:
        node.stop()


def test_gas_is_simulated_at_the_committed_sequence_number(aptos):
    """A write queued behind others gets its gas from a simulation at the account's committed sequence number (a
    real node refuses one from the future), and is signed with its own number."""
    w = aptos
    admin = w.writer["admin"]
    w.node.auto_commit = False
    committed = admin.next_nonce()
    asked = []
    real = admin.simulate
    admin.simulate = lambda req, nonce=None: asked.append(nonce) or real(req, nonce)
    req = TxRequest("aptos", "carbon_credit", "create_batch", ("P", 2020, "M", "R", "S", "0x" + "cd" * 32))
    fees = admin.fees(req, committed + 3)
    assert asked == [None]  # simulated at the committed number, not at committed + 3
    assert admin.raw_transaction(req, committed + 3, fees).sequence_number == committed + 3

