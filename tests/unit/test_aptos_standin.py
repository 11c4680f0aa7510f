"""Every route the stand-in fullnode serves answers with the shape (keys, JSON types, status, headers) of the
aptos-core goldens it follows; and aptos-sdk signs exactly the bytes a real node signed (recorded signatures verify)."""

from __future__ import annotations

import httpx
import pytest

from chains.aptos.client import BCS_SIGNED
from chains.base import TxRequest
from tests.unit.aptos_fixtures import aptos, golden, same_shape, send  # noqa: F401 - fixture

# route -> the goldens its answers follow (status, golden name); "error shape" = the {message, error_code,
# vm_error_code} body every error golden shows, for answers no golden records (codes from aptos-core's API spec).
ROUTES = {
    ("GET", "/v1"): [(200, "index_test__test_get_index")],
    ("GET", "/v1/transactions"): [
        (200, "transactions_test__test_get_transactions_output_user_transaction_with_entry_function_payload"),
        (400, "transactions_test__test_get_transactions_with_start_version_is_too_large"),
        (400, "transactions_test__test_get_transactions_with_zero_limit"),
        (400, "transactions_test__test_get_transactions_with_invalid_limit_param"),
        (400, "transactions_test__test_get_transactions_with_invalid_start_version_param"),
        (410, "error shape")],
    ("GET", "/v1/transactions/by_hash/{hash}"): [
        (200, "transactions_test__test_get_transaction_by_hash_with_delayed_internal_indexer"),
        (200, "transactions_test__test_post_bcs_format_transaction"),  # pending: the submit shape + "type"
        (404, "transactions_test__test_get_transaction_by_hash_not_found"),
        (400, "transactions_test__test_get_transaction_by_invalid_hash")],
    ("POST", "/v1/transactions"): [
        (202, "transactions_test__test_post_bcs_format_transaction"),
        (400, "transactions_test__test_post_invalid_bcs_format_transaction"),
        (400, "transactions_test__test_post_invalid_signature_transaction"),
        (400, "transactions_test__test_post_transaction_rejected_by_mempool"),
        (415, "transactions_test__test_submit_transaction_rejects_invalid_content_type"),
        (507, "error shape")],
    ("POST", "/v1/transactions/simulate"): [
        (200, "transactions_test__test_simulation_failure_with_move_abort_error_rendering"),
        (400, "simulation_test__test_simulate_transaction_with_valid_signature")],
    ("POST", "/v1/view"): [(200, "view_function__test_simple_view"), (400, "view_function__test_view_does_not_exist"),
                           (400, "transactions_test__test_submit_transaction_rejects_invalid_json")],
    ("GET", "/v1/accounts/{address}"): [(200, "accounts_test__test_get_core_account_data"), (404, "error shape")],
    ("GET", "/v1/estimate_gas_price"): [(200, "transactions_test__test_gas_estimation_ten_blocks")],
}
HEADERS = ("x-aptos-chain-id", "x-aptos-ledger-version", "x-aptos-ledger-oldest-version",
           "x-aptos-ledger-timestampusec", "x-aptos-epoch", "x-aptos-block-height", "x-aptos-oldest-block-height")
ERROR = {"message": "m", "error_code": "c", "vm_error_code": None}


def _route(method: str, path: str) -> tuple[str, str]:
    for (m, pattern) in ROUTES:
        head = pattern.split("{")[0]
        if m == method and (path == pattern or ("{" in pattern and path.startswith(head) and "/" not in path[len(head):])):
            return (m, pattern)
    raise AssertionError(f"the stand-in served {method} {path}, which no golden covers")


def _check(r: httpx.Response, status: int, name: str) -> None:
    assert r.status_code == status, (r.status_code, r.text[:300])
    for h in HEADERS:
        assert h in r.headers, h
    want = ERROR if name == "error shape" else golden(name)
    assert (m := _route(r.request.method, r.request.url.path)) and (status, name) in ROUTES[m], (m, status, name)
    assert not (diff := same_shape(r.json(), want)), diff


def test_every_route_answers_as_its_goldens(aptos):
    w = aptos
    c = httpx.Client(base_url=w.url)
    assert send(w.writer["admin"], "carbon_credit", "create_batch", "P-1", 2020, "VM0038", "Verra", "S",
                "0x" + "ab" * 32).state.value == "mined"
    mint = send(w.writer["admin"], "CarbonCredit", "mint", str(w.alice.address()), 1, 5, "0x" + "cd" * 32)
    failed = send(w.writer["alice"], "CarbonCredit", "retire", 1, 9, "me", "too much")  # more than she holds
    assert failed.state.value == "reverted" and "EINSUFFICIENT_BALANCE(0x10004)" in failed.error
    tip = w.node.ledger_version

    _check(c.get("/v1"), 200, "index_test__test_get_index")
    page = c.get("/v1/transactions", params={"start": 0, "limit": 1000})
    _check(page, 200, "transactions_test__test_get_transactions_output_user_transaction_with_entry_function_payload")
    assert len(page.json()) == tip + 1 <= 100 and {t["type"] for t in page.json()} == {
        "block_metadata_transaction", "user_transaction", "block_epilogue_transaction"}
    by_type = {}
    for t in page.json():
        by_type.setdefault(t["type"], t)
    for t in golden("transactions_test__test_get_transactions_output_user_transaction_with_entry_function_payload"):
        assert not (d := same_shape(by_type[t["type"]], t)), (t["type"], d)
    too_far = c.get("/v1/transactions", params={"start": tip + 1})
    _check(too_far, 400, "transactions_test__test_get_transactions_with_start_version_is_too_large")
    assert too_far.json()["message"] == (f"Given start value ({tip + 1}) is higher than the current ledger version, "
                                         f"it must be < {tip + 1}")
    for params, name in (({"limit": 0}, "with_zero_limit"), ({"limit": "x"}, "with_invalid_limit_param"),
                         ({"start": "hello"}, "with_invalid_start_version_param")):
        r = c.get("/v1/transactions", params=params)
        _check(r, 400, f"transactions_test__test_get_transactions_{name}")
        if name != "with_invalid_limit_param":  # the golden's limit was "hello"-like too: same text
            assert r.json() == golden(f"transactions_test__test_get_transactions_{name}")
    w.node.prune(3)
    pruned = c.get("/v1/transactions", params={"start": 1})
    _check(pruned, 410, "error shape")
    assert pruned.json()["error_code"] == "version_pruned"
    w.node.prune(0)

    ok = c.get(f"/v1/transactions/by_hash/{mint.tx_hash}")
    _check(ok, 200, "transactions_test__test_get_transaction_by_hash_with_delayed_internal_indexer")
    bad = c.get(f"/v1/transactions/by_hash/{failed.tx_hash}")
    assert bad.json()["success"] is False and bad.json()["vm_status"].startswith("Move abort in 0x1::fungible_asset: ")
    assert bad.json()["vm_status"] == golden(
        "transactions_test__test_get_transaction_by_hash_with_delayed_internal_indexer")["vm_status"]
    _check(c.get("/v1/transactions/by_hash/0x" + "dd" * 32), 404, "transactions_test__test_get_transaction_by_hash_not_found")
    _check(c.get("/v1/transactions/by_hash/0x12"), 400, "transactions_test__test_get_transaction_by_invalid_hash")
    assert c.get("/v1/transactions/by_hash/0x12").json() == golden("transactions_test__test_get_transaction_by_invalid_hash")

    wr = w.writer["bob"]
    req = TxRequest("aptos", "carbon_credit", "transfer", (str(w.alice.address()), 1, 1))
    w.node.auto_commit = False
    h, raw = wr.sign(req, 0)
    sub = c.post("/v1/transactions", content=raw, headers={"Content-Type": BCS_SIGNED})
    _check(sub, 202, "transactions_test__test_post_bcs_format_transaction")
    assert sub.json()["hash"] == h
    pending = c.get(f"/v1/transactions/by_hash/{h}")
    # No golden records a pending transaction read by hash: it is the submit answer's shape plus the "type" the
    # API spec gives it ("pending_transaction"), which the writer reads.
    assert pending.status_code == 200 and pending.json().pop("type") == "pending_transaction"
    assert not same_shape({k: v for k, v in pending.json().items() if k != "type"},
                          golden("transactions_test__test_post_bcs_format_transaction"))
    _, other = wr.sign(TxRequest("aptos", "carbon_credit", "transfer", (str(w.alice.address()), 1, 2)), 0)
    _check(c.post("/v1/transactions", content=other, headers={"Content-Type": BCS_SIGNED}), 400,
           "transactions_test__test_post_transaction_rejected_by_mempool")
    tampered = raw[:-1] + bytes([raw[-1] ^ 1])
    r = c.post("/v1/transactions", content=tampered, headers={"Content-Type": BCS_SIGNED})
    _check(r, 400, "transactions_test__test_post_invalid_signature_transaction")
    assert r.json() == golden("transactions_test__test_post_invalid_signature_transaction")
    _check(c.post("/v1/transactions", content=raw[:10], headers={"Content-Type": BCS_SIGNED}), 400,
           "transactions_test__test_post_invalid_bcs_format_transaction")
    r = c.post("/v1/transactions", content=raw, headers={"Content-Type": "invalid"})
    _check(r, 415, "transactions_test__test_submit_transaction_rejects_invalid_content_type")
    assert r.json() == golden("transactions_test__test_submit_transaction_rejects_invalid_content_type")
    w.node.mempool_capacity = 1
    _, third = w.writer["alice"].sign(req, w.writer["alice"].next_nonce())
    full = c.post("/v1/transactions", content=third, headers={"Content-Type": BCS_SIGNED})
    _check(full, 507, "error shape")
    w.node.mempool_capacity, w.node.auto_commit = 1000, True

    from aptos_sdk.transactions import SignedTransaction

    raw_tx = wr.raw_transaction(req, 1)
    sim = SignedTransaction(raw_tx, raw_tx.sign_simulated(w.bob.public_key())).bytes()
    r = c.post("/v1/transactions/simulate", content=sim, headers={"Content-Type": BCS_SIGNED})
    _check(r, 200, "transactions_test__test_simulation_failure_with_move_abort_error_rendering")
    _check(c.post("/v1/transactions/simulate", content=raw, headers={"Content-Type": BCS_SIGNED}), 400,
           "simulation_test__test_simulate_transaction_with_valid_signature")

    pkg = "0x" + w.package[2:].lstrip("0")
    _check(c.post("/v1/view", json={"function": f"{pkg}::carbon_credit::balance", "type_arguments": [],
                                    "arguments": [str(w.alice.address()), "1"]}), 200, "view_function__test_simple_view")
    _check(c.post("/v1/view", json={"function": "0x1::aptos_account::fake_function", "type_arguments": [],
                                    "arguments": []}), 400, "view_function__test_view_does_not_exist")
    _check(c.post("/v1/view", content=b"{", headers={"Content-Type": "application/json"}), 400,
           "transactions_test__test_submit_transaction_rejects_invalid_json")
    _check(c.get(f"/v1/accounts/{w.admin.address()}"), 200, "accounts_test__test_get_core_account_data")
    _check(c.get("/v1/accounts/0x" + "77" * 32), 404, "error shape")
    _check(c.get("/v1/estimate_gas_price"), 200, "transactions_test__test_gas_estimation_ten_blocks")

    served = {_route(m, p) for m, p in w.node.requests}
    assert served == set(ROUTES), set(ROUTES) - served  # every route exercised, none unmapped
    c.close()


@pytest.mark.parametrize("name", ["transactions_test__test_post_bcs_format_transaction",
                                  "transactions_test__test_get_transaction_by_hash_with_delayed_internal_indexer"])
def test_sdk_signs_the_bytes_a_real_node_signed(name):
    """The goldens' transactions were signed by aptos-core; rebuilt with aptos-sdk and chains.aptos.bcs (the
    writer's encoder) from their JSON, their recorded ed25519 signatures verify: the signing bytes are identical."""
    from aptos_sdk import ed25519
    from aptos_sdk.account_address import AccountAddress
    from aptos_sdk.transactions import EntryFunction, ModuleId, RawTransaction, TransactionPayload

    from chains.aptos import bcs

    g = golden(name)
    p = g["payload"]
    mod, fn = p["function"].rsplit("::", 1)
    types = {"0x1::aptos_account::create_account": ["address"], "0x1::aptos_account::transfer": ["address", "u64"]}
    args = [bcs.encode(t, a) for t, a in zip(types[p["function"]], p["arguments"])]
    entry = EntryFunction(ModuleId.from_str(mod), fn, [], args)
    raw = RawTransaction(AccountAddress.from_str_relaxed(g["sender"]), int(g["sequence_number"]),
                         TransactionPayload(entry), int(g["max_gas_amount"]), int(g["gas_unit_price"]),
                         int(g["expiration_timestamp_secs"]), 4)
    key = ed25519.PublicKey.from_str(g["signature"]["public_key"])
    assert key.verify(raw.keyed(), ed25519.Signature(bytes.fromhex(g["signature"]["signature"][2:])))
    assert not key.verify(raw.keyed(), ed25519.Signature(bytes(64)))


# Two transactions broadcast on Aptos (devnet and mainnet; their explorer pages are named in trustwallet/wallet-core's
# tests/chains/Aptos/TWAnySignerTests.cpp, Apache-2.0, where these signed bytes come from) with their on-chain hashes.
BROADCAST = [
    ("07968dab936c1bad187c60ce4082f307d030d780e91e694ae03aef16aba73f3063000000000000000200000000000000000000000000000000"
     "000000000000000000000000000000010d6170746f735f6163636f756e74087472616e7366657200022007968dab936c1bad187c60ce4082"
     "f307d030d780e91e694ae03aef16aba73f3008e803000000000000fe4d3200000000006400000000000000c2276ada00000000210020ea52"
     "6ba1710343d953461ff68641f1b7df5f23b9042ffa2d2a798d3adb3f3d6c405707246db31e2335edc4316a7a656a11691d1d1647f6e864d1"
     "ab12f43428aaaf806cf02120d0b608cdd89c5c904af7b137432aacdd60cc53f9fad7bd33578e01",
     "0xb4d62afd3862116e060dd6ad9848ccb50c2bc177799819f1d29c059ae2042467"),
    ("07968dab936c1bad187c60ce4082f307d030d780e91e694ae03aef16aba73f304500000000000000029770fa9c725cbd97eb50b2be5f7416"
     "efdfd1f1554beb0750d4dae4c64e860da30a636f6e74726f6c6c6572076465706f7369740107000000000000000000000000000000000000"
     "00000000000000000000000000010a6170746f735f636f696e094170746f73436f696e00030d0c4d61696e204163636f756e740880969800"
     "00000000010050c30000000000006400000000000000f7c5776700000000010020ea526ba1710343d953461ff68641f1b7df5f23b9042ffa"
     "2d2a798d3adb3f3d6c4013dcf1636abd31996729ded4d3bf56e9c7869a7188df4f185cbcce42f0dc74b6e1b54d31703ee3babbea2ef72b33"
     "38b8c2866cec68cbd761ccc7f80910124304",
     "0x1ee2aa55382bf6b5a9f7a7f2b2066e16979489c6b2868704a2cf2c482f12b5ca"),
]


@pytest.mark.parametrize("signed,tx_hash", BROADCAST)
def test_locally_computed_hash_is_the_chains(signed, tx_hash):
    """The hash the writer persists before submitting is the one the chain gave these broadcast transactions, and
    the stand-in's checks (aptos-sdk deserialisation and signature verification) accept them."""
    from aptos_sdk.bcs import Deserializer
    from aptos_sdk.transactions import SignedTransaction

    from chains.aptos import bcs

    raw = bytes.fromhex(signed)
    assert bcs.transaction_hash(raw) == tx_hash
    de = Deserializer(raw)
    assert SignedTransaction.deserialize(de).verify() and de.remaining() == 0


def test_writer_encoding_reproduces_a_broadcast_transaction():
    """The devnet transfer above rebuilt from its inputs (its test key is public) with the writer's encoder and
    aptos-sdk: the same signed bytes, so the same hash."""
    from aptos_sdk.account import Account
    from aptos_sdk.transactions import (EntryFunction, ModuleId, RawTransaction, SignedTransaction,
                                        TransactionPayload)

    from chains.aptos import bcs

    key = Account.load_key("ed25519-priv-0x5d996aa76b3212142792d9130796cd2e11e3c445a93118c08414df4f66bc60ec")
    to = "0x07968dab936c1bad187c60ce4082f307d030d780e91e694ae03aef16aba73f30"
    entry = EntryFunction(ModuleId.from_str("0x1::aptos_account"), "transfer", [],
                          [bcs.encode("address", to), bcs.encode("u64", "1000")])
    raw = RawTransaction(key.address(), 99, TransactionPayload(entry), 3296766, 100, 3664390082, 33)
    signed = SignedTransaction(raw, raw.sign(key.private_key)).bytes()
    assert str(key.address()) == to
    assert signed.hex() == BROADCAST[0][0] and bcs.transaction_hash(signed) == BROADCAST[0][1]
