"""Marketplace: listing, on-chain buys, oracle off-chain settlement with unique payment refs, cancel."""

from types import SimpleNamespace

import pytest
from eth_utils import keccak
from web3 import EthereumTesterProvider, Web3

from chains.evm.deploy import deploy_protocol
from tests.unit.contracts_fixtures import _snapshot, events, reverts_for, send  # noqa: F401 (_snapshot: autouse fixture)


CONTRACT = "Marketplace"
reverts = reverts_for(CONTRACT)
PRICE = 10**15
ORACLE_ROLE = keccak(text="ORACLE_ROLE")


@pytest.fixture(scope="module")
def env():
    w3 = Web3(EthereumTesterProvider())
    a = w3.eth.accounts
    dep = deploy_protocol(w3, a[0], roles={"ORACLE": [a[5]]})
    e = SimpleNamespace(w3=w3, admin=a[0], seller=a[1], buyer=a[2], other=a[3], eve=a[4], oracle=a[5],
                        cc=dep.contract(w3, "CarbonCredit"), mk=dep.contract(w3, "Marketplace"))
    r = send(e.cc.functions.createBatch("VCS-9", 2022, "VM0042", "Verra", "SN-9", keccak(text="m")), e.admin)
    e.batch = events(e.cc, r, "BatchCreated")[0]["batchId"]
    send(e.cc.functions.mint(e.seller, e.batch, 1000, keccak(text="v1")), e.admin)
    send(e.cc.functions.setApprovalForAll(e.mk.address, True), e.seller)
    return e


def listing(env, amount=100, price=PRICE):
    r = send(env.mk.functions.list(env.batch, amount, price), env.seller)
    return events(env.mk, r, "Listed")[0]["listingId"]


def bal(env, who):
    return env.cc.functions.balanceOf(who, env.batch).call()


def test_list_escrows_credits(env):
    r = send(env.mk.functions.list(env.batch, 100, PRICE), env.seller)
    assert events(env.mk, r, "Listed") == [
        {"listingId": 1, "seller": env.seller, "batchId": env.batch, "amount": 100, "pricePerUnit": PRICE}]
    assert events(env.cc, r, "TransferSingle") == [
        {"operator": env.mk.address, "from": env.seller, "to": env.mk.address, "id": env.batch, "value": 100}]
    assert bal(env, env.seller) == 900 and bal(env, env.mk.address) == 100
    assert env.mk.functions.listings(1).call() == [env.seller, env.batch, 100, PRICE, True]
    assert listing(env, 5) == 2
    assert env.mk.functions.listingCount().call() == 2
    assert env.mk.functions.credit().call() == env.cc.address
    assert env.mk.functions.supportsInterface(bytes.fromhex("4e2312e0")).call()  # IERC1155Receiver


def test_list_needs_approval_and_balance(env):
    with reverts("ERC1155MissingApprovalForAll", operator=env.mk.address, owner=env.other):
        env.mk.functions.list(env.batch, 1, PRICE).transact({"from": env.other})
    send(env.cc.functions.setApprovalForAll(env.mk.address, True), env.other)
    with reverts("ERC1155InsufficientBalance", sender=env.other, balance=0, needed=1):
        env.mk.functions.list(env.batch, 1, PRICE).transact({"from": env.other})
    with reverts("ZeroAmount"):
        env.mk.functions.list(env.batch, 0, PRICE).transact({"from": env.seller})


def test_rejects_direct_deposits(env):
    with reverts("UnsolicitedTransfer", operator=env.seller):
        env.cc.functions.safeTransferFrom(env.seller, env.mk.address, env.batch, 1, b"").transact(
            {"from": env.seller})
    with reverts("UnsolicitedTransfer", operator=env.seller):
        env.cc.functions.safeBatchTransferFrom(env.seller, env.mk.address, [env.batch], [1], b"").transact(
            {"from": env.seller})
    assert bal(env, env.mk.address) == 0


def test_buy_pays_seller_and_delivers(env):
    lid = listing(env, 100)
    w3 = env.w3
    seller_eth = w3.eth.get_balance(env.seller)
    r = send(env.mk.functions.buy(lid, 30), env.buyer, value=30 * PRICE)
    assert events(env.mk, r, "Sold") == [{"listingId": lid, "buyer": env.buyer, "seller": env.seller,
                                          "batchId": env.batch, "amount": 30, "pricePerUnit": PRICE,
                                          "paymentRef": ""}]
    assert events(env.cc, r, "TransferSingle")[0]["to"] == env.buyer
    assert w3.eth.get_balance(env.seller) - seller_eth == 30 * PRICE
    assert w3.eth.get_balance(env.mk.address) == 0
    assert bal(env, env.buyer) == 30 and bal(env, env.mk.address) == 70
    assert env.mk.functions.listings(lid).call()[2:] == [70, PRICE, True]
    send(env.mk.functions.buy(lid, 70), env.other, value=70 * PRICE)
    assert env.mk.functions.listings(lid).call()[2:] == [0, PRICE, False]
    with reverts("ListingNotActive", listingId=lid):
        env.mk.functions.buy(lid, 1).transact({"from": env.buyer, "value": PRICE})


def test_buy_checks(env):
    lid = listing(env, 10)
    with reverts("WrongPayment", expected=2 * PRICE, got=2 * PRICE - 1):
        env.mk.functions.buy(lid, 2).transact({"from": env.buyer, "value": 2 * PRICE - 1})
    with reverts("WrongPayment", expected=2 * PRICE, got=3 * PRICE):
        env.mk.functions.buy(lid, 2).transact({"from": env.buyer, "value": 3 * PRICE})
    with reverts("InsufficientListing", listingId=lid, available=10, requested=11):
        env.mk.functions.buy(lid, 11).transact({"from": env.buyer, "value": 11 * PRICE})
    with reverts("ZeroAmount"):
        env.mk.functions.buy(lid, 0).transact({"from": env.buyer, "value": 0})
    with reverts("UnknownListing", listingId=lid + 1):
        env.mk.functions.buy(lid + 1, 1).transact({"from": env.buyer, "value": PRICE})


def test_settle_offchain_by_oracle(env):
    lid = listing(env, 50)
    assert not env.mk.functions.paymentRefUsed("pi_123").call()
    seller_eth = env.w3.eth.get_balance(env.seller)
    r = send(env.mk.functions.settleOffchain(lid, env.buyer, 20, "pi_123"), env.oracle)
    assert events(env.mk, r, "Sold") == [{"listingId": lid, "buyer": env.buyer, "seller": env.seller,
                                          "batchId": env.batch, "amount": 20, "pricePerUnit": PRICE,
                                          "paymentRef": "pi_123"}]
    assert bal(env, env.buyer) == 20
    assert env.w3.eth.get_balance(env.seller) == seller_eth
    assert env.mk.functions.paymentRefUsed("pi_123").call()
    assert env.mk.functions.listings(lid).call()[2] == 30


def test_settle_offchain_rejects_repeated_payment_ref(env):
    lid = listing(env, 50)
    send(env.mk.functions.settleOffchain(lid, env.buyer, 1, "pi_dup"), env.oracle)
    with reverts("PaymentRefUsed", paymentRef="pi_dup"):
        env.mk.functions.settleOffchain(lid, env.other, 1, "pi_dup").transact({"from": env.oracle})
    lid2 = listing(env, 5)
    with reverts("PaymentRefUsed", paymentRef="pi_dup"):
        env.mk.functions.settleOffchain(lid2, env.buyer, 1, "pi_dup").transact({"from": env.oracle})
    assert bal(env, env.other) == 0


def test_settle_offchain_checks(env):
    lid = listing(env, 5)
    for who in (env.buyer, env.seller, env.admin):
        with reverts("AccessControlUnauthorizedAccount", account=who, neededRole=ORACLE_ROLE):
            env.mk.functions.settleOffchain(lid, env.buyer, 1, "pi_x").transact({"from": who})
    with reverts("EmptyPaymentRef"):
        env.mk.functions.settleOffchain(lid, env.buyer, 1, "").transact({"from": env.oracle})
    with reverts("InsufficientListing", available=5, requested=6):
        env.mk.functions.settleOffchain(lid, env.buyer, 6, "pi_y").transact({"from": env.oracle})
    with reverts("ZeroAddress"):
        env.mk.functions.settleOffchain(lid, "0x" + "00" * 20, 1, "pi_z").transact({"from": env.oracle})
    assert not env.mk.functions.paymentRefUsed("pi_y").call()  # reverted: the ref is still free


def test_cancel_returns_remaining(env):
    lid = listing(env, 100)
    send(env.mk.functions.buy(lid, 40), env.buyer, value=40 * PRICE)
    with reverts("NotSeller", listingId=lid, caller=env.eve):
        env.mk.functions.cancel(lid).transact({"from": env.eve})
    r = send(env.mk.functions.cancel(lid), env.seller)
    assert events(env.mk, r, "Cancelled") == [{"listingId": lid}]
    assert events(env.cc, r, "TransferSingle")[0]["value"] == 60
    assert bal(env, env.seller) == 960 and bal(env, env.mk.address) == 0
    assert env.mk.functions.listings(lid).call()[2:] == [0, PRICE, False]
    with reverts("ListingNotActive", listingId=lid):
        env.mk.functions.cancel(lid).transact({"from": env.seller})
    with reverts("ListingNotActive", listingId=lid):
        env.mk.functions.settleOffchain(lid, env.buyer, 1, "pi_late").transact({"from": env.oracle})


def test_admin_can_cancel(env):
    lid = listing(env, 10)
    send(env.mk.functions.cancel(lid), env.admin)
    assert bal(env, env.seller) == 1000
