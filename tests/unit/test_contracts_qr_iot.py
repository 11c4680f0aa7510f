"""QRPayment (pay / settle once per order hash) and IoTAnchor (Merkle roots, on-chain proof verification
against trees built by chains/merkle.py)."""

from types import SimpleNamespace

import pytest
from eth_utils import keccak
from web3 import EthereumTesterProvider, Web3

from chains import merkle
from chains.evm.deploy import deploy_protocol
from tests.unit.contracts_fixtures import _snapshot, events, reverts_for, send  # noqa: F401 (_snapshot: autouse fixture)


CONTRACT = None
reverts = reverts_for(CONTRACT)
SETTLER_ROLE = keccak(text="SETTLER_ROLE")
ORACLE_ROLE = keccak(text="ORACLE_ROLE")
ETH = 10**18


@pytest.fixture(scope="module")
def env():
    w3 = Web3(EthereumTesterProvider())
    a = w3.eth.accounts
    dep = deploy_protocol(w3, a[0], roles={"SETTLER": [a[5]], "ORACLE": [a[6]]})
    return SimpleNamespace(w3=w3, admin=a[0], alice=a[1], bob=a[2], merchant=a[3], eve=a[4], settler=a[5],
                           oracle=a[6], qr=dep.contract(w3, "QRPayment"), iot=dep.contract(w3, "IoTAnchor"))


# ---- QRPayment ----
def test_qr_pay_accumulates_and_settles(env):
    h = keccak(text="qr-order-1")
    r = send(env.qr.functions.pay(h), env.alice, value=ETH)
    assert events(env.qr, r, "Paid") == [{"orderHash": h, "payer": env.alice, "amount": ETH}]
    send(env.qr.functions.pay(h), env.bob, value=ETH // 2)
    assert env.qr.functions.pending(h).call() == 3 * ETH // 2
    assert env.w3.eth.get_balance(env.qr.address) == 3 * ETH // 2
    before = env.w3.eth.get_balance(env.merchant)
    r = send(env.qr.functions.settleQROrder(env.merchant, h), env.settler)
    assert events(env.qr, r, "Settled") == [{"orderDataHash": h, "beneficiary": env.merchant, "amount": 3 * ETH // 2}]
    assert env.w3.eth.get_balance(env.merchant) - before == 3 * ETH // 2
    assert env.w3.eth.get_balance(env.qr.address) == 0
    assert env.qr.functions.settled(h).call() and env.qr.functions.pending(h).call() == 0


def test_qr_unpaid_hash_cannot_be_settled_so_a_later_payment_still_settles(env):
    """Settling an unpaid hash used to mark it settled (amount 0), so its later payment could never be settled
    (pay() reverts on a settled hash): the contract refuses it and the hash stays usable."""
    h = keccak(text="not-paid-yet")
    with reverts("OrderNotPaid", orderDataHash=h):
        env.qr.functions.settleQROrder(env.eve, h).transact({"from": env.settler})
    assert not env.qr.functions.settled(h).call()
    send(env.qr.functions.pay(h), env.alice, value=ETH)
    before = env.w3.eth.get_balance(env.merchant)
    r = send(env.qr.functions.settleQROrder(env.merchant, h), env.settler)
    assert events(env.qr, r, "Settled") == [{"orderDataHash": h, "beneficiary": env.merchant, "amount": ETH}]
    assert env.w3.eth.get_balance(env.merchant) - before == ETH


def test_qr_rejects_second_settlement_and_late_payment(env):
    h = keccak(text="once")
    send(env.qr.functions.pay(h), env.alice, value=ETH)
    send(env.qr.functions.settleQROrder(env.merchant, h), env.settler)
    with reverts("OrderAlreadySettled", orderDataHash=h):
        env.qr.functions.settleQROrder(env.merchant, h).transact({"from": env.settler})
    with reverts("OrderAlreadySettled", orderDataHash=h):
        env.qr.functions.settleQROrder(env.eve, h).transact({"from": env.settler})
    with reverts("OrderAlreadySettled", orderDataHash=h):
        env.qr.functions.pay(h).transact({"from": env.alice, "value": 1})


def test_qr_checks(env):
    h = keccak(text="x")
    for who in (env.alice, env.merchant, env.admin, env.oracle):
        with reverts("AccessControlUnauthorizedAccount", account=who, neededRole=SETTLER_ROLE):
            env.qr.functions.settleQROrder(who, h).transact({"from": who})
    with reverts("ZeroPayment"):
        env.qr.functions.pay(h).transact({"from": env.alice, "value": 0})
    with reverts("ZeroAddress"):
        env.qr.functions.settleQROrder("0x" + "00" * 20, h).transact({"from": env.settler})
    assert not env.qr.functions.settled(h).call()


# ---- IoTAnchor ----
def anchor(env, root, leaves=4, start=1_700_000_000, end=1_700_003_600, quality=9500):
    return send(env.iot.functions.anchor(root, leaves, start, end, quality), env.oracle)


def test_anchor_records_root(env):
    root = keccak(text="root-1")
    r = anchor(env, root, 16, 100, 200, 10000)
    assert events(env.iot, r, "Anchored") == [{"anchorId": 1, "root": root, "leafCount": 16, "windowStart": 100,
                                               "windowEnd": 200, "qualityScore": 10000}]
    assert env.iot.functions.anchoredAt(root).call() == r["blockNumber"]
    assert env.iot.functions.anchors(1).call() == [root, 16, 100, 200, 10000, r["blockNumber"]]
    r2 = anchor(env, keccak(text="root-2"), 1, 5, 5, 0)
    assert events(env.iot, r2, "Anchored")[0]["anchorId"] == 2
    assert env.iot.functions.anchorCount().call() == 2
    assert env.iot.functions.anchoredAt(keccak(text="nope")).call() == 0


def test_anchor_rejects_repeated_root(env):
    root = keccak(text="dup-root")
    anchor(env, root)
    with reverts("RootAlreadyAnchored", root=root):
        env.iot.functions.anchor(root, 9, 1, 2, 3).transact({"from": env.oracle})


def test_anchor_checks(env):
    root = keccak(text="r")
    for who in (env.alice, env.admin, env.settler):
        with reverts("AccessControlUnauthorizedAccount", account=who, neededRole=ORACLE_ROLE):
            env.iot.functions.anchor(root, 1, 1, 2, 3).transact({"from": who})
    with reverts("ZeroRoot"):
        env.iot.functions.anchor(b"\0" * 32, 1, 1, 2, 3).transact({"from": env.oracle})
    with reverts("EmptyAnchor"):
        env.iot.functions.anchor(root, 0, 1, 2, 3).transact({"from": env.oracle})
    with reverts("InvalidWindow", windowStart=3, windowEnd=2):
        env.iot.functions.anchor(root, 1, 3, 2, 3).transact({"from": env.oracle})
    with reverts("InvalidQualityScore", qualityScore=10001):
        env.iot.functions.anchor(root, 1, 1, 2, 10001).transact({"from": env.oracle})
    assert env.iot.functions.anchorCount().call() == 0


@pytest.mark.parametrize("size", [1, 2, 3, 7, 16])
def test_merkle_proofs_verify_on_chain(env, size):
    leaves = [merkle.hash_leaf(f"sensor-{size}-{i}".encode()) for i in range(size)]
    tree = merkle.build_tree(leaves)
    verify = env.iot.functions.verify
    assert not verify(tree.root, leaves[0], tree.proof(0)).call()  # not anchored yet
    anchor(env, tree.root, size)
    for i, leaf in enumerate(leaves):
        proof = tree.proof(i)
        assert merkle.verify(tree.root, leaf, proof)
        assert verify(tree.root, leaf, proof).call(), f"leaf {i} of {size}"
    forged = merkle.hash_leaf(b"forged")
    assert not verify(tree.root, forged, tree.proof(0)).call()
    assert not merkle.verify(tree.root, forged, tree.proof(0))
    if size > 1:
        bad = [bytes(32)] + tree.proof(size - 1)[1:]
        assert not verify(tree.root, leaves[-1], bad).call()
        assert not merkle.verify(tree.root, leaves[-1], bad)
        assert not verify(tree.root, leaves[0], tree.proof(1)).call()  # another leaf's proof
    other = merkle.build_tree(leaves + [forged])
    assert not verify(other.root, forged, other.proof(size)).call()  # valid proof, unanchored root


def test_merkle_tree_shape():
    a, b, c = (keccak(text=x) for x in "abc")
    one = merkle.build_tree([a])
    assert one.root == a and one.proof(0) == []
    two = merkle.build_tree([a, b])
    assert two.root == merkle.hash_pair(a, b) == merkle.hash_pair(b, a)
    assert two.root == keccak(min(a, b) + max(a, b))
    three = merkle.build_tree([a, b, c])
    assert three.root == merkle.hash_pair(merkle.hash_pair(a, b), c)  # odd node promoted unchanged
    assert three.proof(2) == [merkle.hash_pair(a, b)]
    assert merkle.build_tree([a, b, c]).root == three.root and len(three) == 3
    leaves = [keccak(text=str(i)) for i in range(16)]
    assert all(len(merkle.build_tree(leaves).proof(i)) == 4 for i in range(16))


def test_merkle_rejects_bad_input():
    with pytest.raises(ValueError):
        merkle.build_tree([])
    with pytest.raises(ValueError):
        merkle.build_tree([b"short"])
    with pytest.raises(IndexError):
        merkle.build_tree([bytes(32)]).proof(1)
