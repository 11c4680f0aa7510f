"""Escrow: the order lifecycle, on-chain and off-chain funding, disputes both ways, ETH payouts, roles."""

from types import SimpleNamespace

import pytest
from eth_utils import keccak
from web3 import EthereumTesterProvider, Web3

from chains.evm.deploy import deploy_protocol
from tests.unit.contracts_fixtures import _snapshot, events, reverts_for, send  # noqa: F401 (_snapshot: autouse fixture)


CONTRACT = "Escrow"
reverts = reverts_for(CONTRACT)
AMOUNT = 3 * 10**17
ORACLE_ROLE = keccak(text="ORACLE_ROLE")
ARBITER_ROLE = keccak(text="ARBITER_ROLE")
META = keccak(text="order-metadata")
TRACK = keccak(text="tracking")
# Status enum
NONE, CREATED, FUNDED, SHIPPED, DELIVERED, DISPUTED, RESOLVED, CANCELLED = range(8)


@pytest.fixture(scope="module")
def env():
    w3 = Web3(EthereumTesterProvider())
    a = w3.eth.accounts
    dep = deploy_protocol(w3, a[0], roles={"ORACLE": [a[5]], "ARBITER": [a[6]]})
    return SimpleNamespace(w3=w3, admin=a[0], buyer=a[1], seller=a[2], eve=a[4], oracle=a[5], arbiter=a[6],
                           es=dep.contract(w3, "Escrow"))


def create(env, amount=AMOUNT):
    r = send(env.es.functions.createOrder(env.seller, amount, META), env.buyer)
    return events(env.es, r, "OrderCreated")[0]["orderId"]


def funded(env, offchain=False, ref="pi_1"):
    oid = create(env)
    if offchain:
        send(env.es.functions.recordOffchainPayment(oid, ref), env.oracle)
    else:
        send(env.es.functions.fund(oid), env.buyer, value=AMOUNT)
    return oid


def status(env, oid):
    return env.es.functions.orders(oid).call()[5]


def eth(env, who):
    return env.w3.eth.get_balance(who)


def test_create_order(env):
    r = send(env.es.functions.createOrder(env.seller, AMOUNT, META), env.buyer)
    assert events(env.es, r, "OrderCreated") == [
        {"orderId": 1, "buyer": env.buyer, "seller": env.seller, "amount": AMOUNT, "metadataHash": META}]
    assert env.es.functions.orders(1).call() == [env.buyer, env.seller, AMOUNT, META, b"\0" * 32, CREATED, False]
    assert create(env) == 2 and env.es.functions.orderCount().call() == 2
    with reverts("ZeroAmount"):
        env.es.functions.createOrder(env.seller, 0, META).transact({"from": env.buyer})
    with reverts("ZeroAddress"):
        env.es.functions.createOrder("0x" + "00" * 20, 1, META).transact({"from": env.buyer})


def test_onchain_lifecycle_pays_seller(env):
    oid = create(env)
    r = send(env.es.functions.fund(oid), env.buyer, value=AMOUNT)
    assert events(env.es, r, "Funded") == [{"orderId": oid, "payer": env.buyer, "amount": AMOUNT, "paymentRef": ""}]
    assert eth(env, env.es.address) == AMOUNT and status(env, oid) == FUNDED
    r = send(env.es.functions.markShipped(oid, TRACK), env.seller)
    assert events(env.es, r, "Shipped") == [{"orderId": oid, "trackingHash": TRACK}]
    assert env.es.functions.orders(oid).call()[4:] == [TRACK, SHIPPED, False]
    before = eth(env, env.seller)
    r = send(env.es.functions.confirmDelivery(oid), env.buyer)
    assert events(env.es, r, "Delivered") == [{"orderId": oid}]
    assert eth(env, env.seller) - before == AMOUNT
    assert eth(env, env.es.address) == 0 and status(env, oid) == DELIVERED


def test_offchain_lifecycle_moves_no_eth(env):
    oid = create(env)
    assert not env.es.functions.paymentRefUsed("pi_42").call()
    r = send(env.es.functions.recordOffchainPayment(oid, "pi_42"), env.oracle)
    assert events(env.es, r, "Funded") == [
        {"orderId": oid, "payer": env.oracle, "amount": AMOUNT, "paymentRef": "pi_42"}]
    assert env.es.functions.paymentRefUsed("pi_42").call()
    assert env.es.functions.orders(oid).call()[5:] == [FUNDED, True]
    send(env.es.functions.markShipped(oid, TRACK), env.seller)
    before = eth(env, env.seller)
    send(env.es.functions.confirmDelivery(oid), env.buyer)
    assert eth(env, env.seller) == before and status(env, oid) == DELIVERED


def test_offchain_payment_rejects_repeated_ref(env):
    o1, o2 = create(env), create(env)
    send(env.es.functions.recordOffchainPayment(o1, "pi_dup"), env.oracle)
    with reverts("PaymentRefUsed", paymentRef="pi_dup"):
        env.es.functions.recordOffchainPayment(o2, "pi_dup").transact({"from": env.oracle})
    assert status(env, o2) == CREATED
    with reverts("InvalidStatus", orderId=o1, current=FUNDED):  # the same order cannot be paid twice
        env.es.functions.recordOffchainPayment(o1, "pi_other").transact({"from": env.oracle})


def test_offchain_payment_checks(env):
    oid = create(env)
    for who in (env.buyer, env.seller, env.admin, env.arbiter):
        with reverts("AccessControlUnauthorizedAccount", account=who, neededRole=ORACLE_ROLE):
            env.es.functions.recordOffchainPayment(oid, "pi_x").transact({"from": who})
    with reverts("EmptyPaymentRef"):
        env.es.functions.recordOffchainPayment(oid, "").transact({"from": env.oracle})
    with reverts("UnknownOrder", orderId=99):
        env.es.functions.recordOffchainPayment(99, "pi_x").transact({"from": env.oracle})


def test_fund_checks(env):
    oid = create(env)
    with reverts("WrongPayment", expected=AMOUNT, got=AMOUNT - 1):
        env.es.functions.fund(oid).transact({"from": env.buyer, "value": AMOUNT - 1})
    with reverts("NotBuyer", orderId=oid, caller=env.eve):
        env.es.functions.fund(oid).transact({"from": env.eve, "value": AMOUNT})
    send(env.es.functions.fund(oid), env.buyer, value=AMOUNT)
    with reverts("InvalidStatus", orderId=oid, current=FUNDED):
        env.es.functions.fund(oid).transact({"from": env.buyer, "value": AMOUNT})
    with reverts("UnknownOrder", orderId=0):
        env.es.functions.fund(0).transact({"from": env.buyer, "value": AMOUNT})


def test_ship_and_confirm_checks(env):
    oid = create(env)
    with reverts("InvalidStatus", orderId=oid, current=CREATED):
        env.es.functions.markShipped(oid, TRACK).transact({"from": env.seller})
    send(env.es.functions.fund(oid), env.buyer, value=AMOUNT)
    with reverts("NotSeller", orderId=oid, caller=env.buyer):
        env.es.functions.markShipped(oid, TRACK).transact({"from": env.buyer})
    with reverts("InvalidStatus", orderId=oid, current=FUNDED):
        env.es.functions.confirmDelivery(oid).transact({"from": env.buyer})
    send(env.es.functions.markShipped(oid, TRACK), env.seller)
    with reverts("NotBuyer", orderId=oid, caller=env.seller):
        env.es.functions.confirmDelivery(oid).transact({"from": env.seller})


@pytest.mark.parametrize("when", ["funded", "shipped"])
def test_dispute_refunds_buyer(env, when):
    oid = funded(env)
    if when == "shipped":
        send(env.es.functions.markShipped(oid, TRACK), env.seller)
    r = send(env.es.functions.raiseDispute(oid, "not as described"), env.buyer)
    assert events(env.es, r, "Disputed") == [{"orderId": oid, "by": env.buyer, "reason": "not as described"}]
    assert status(env, oid) == DISPUTED
    buyer_before, seller_before = eth(env, env.buyer), eth(env, env.seller)
    r = send(env.es.functions.resolveDispute(oid, True), env.arbiter)
    assert events(env.es, r, "Resolved") == [{"orderId": oid, "refundedBuyer": True}]
    assert eth(env, env.buyer) - buyer_before == AMOUNT
    assert eth(env, env.seller) == seller_before
    assert eth(env, env.es.address) == 0 and status(env, oid) == RESOLVED


def test_dispute_pays_seller(env):
    oid = funded(env)
    send(env.es.functions.markShipped(oid, TRACK), env.seller)
    r = send(env.es.functions.raiseDispute(oid, "buyer unresponsive"), env.seller)
    assert events(env.es, r, "Disputed")[0]["by"] == env.seller
    buyer_before, seller_before = eth(env, env.buyer), eth(env, env.seller)
    r = send(env.es.functions.resolveDispute(oid, False), env.arbiter)
    assert events(env.es, r, "Resolved") == [{"orderId": oid, "refundedBuyer": False}]
    assert eth(env, env.seller) - seller_before == AMOUNT
    assert eth(env, env.buyer) == buyer_before and eth(env, env.es.address) == 0


def test_offchain_dispute_moves_no_eth(env):
    oid = funded(env, offchain=True)
    send(env.es.functions.raiseDispute(oid, "x"), env.buyer)
    before = eth(env, env.buyer)
    send(env.es.functions.resolveDispute(oid, True), env.arbiter)
    assert eth(env, env.buyer) == before and status(env, oid) == RESOLVED


def test_dispute_checks(env):
    oid = create(env)
    with reverts("InvalidStatus", orderId=oid, current=CREATED):
        env.es.functions.raiseDispute(oid, "x").transact({"from": env.buyer})
    send(env.es.functions.fund(oid), env.buyer, value=AMOUNT)
    with reverts("NotParty", orderId=oid, caller=env.eve):
        env.es.functions.raiseDispute(oid, "x").transact({"from": env.eve})
    with reverts("InvalidStatus", orderId=oid, current=FUNDED):
        env.es.functions.resolveDispute(oid, True).transact({"from": env.arbiter})
    send(env.es.functions.raiseDispute(oid, "x"), env.buyer)
    for who in (env.buyer, env.seller, env.admin, env.oracle):
        with reverts("AccessControlUnauthorizedAccount", account=who, neededRole=ARBITER_ROLE):
            env.es.functions.resolveDispute(oid, True).transact({"from": who})
    with reverts("InvalidStatus", orderId=oid, current=DISPUTED):
        env.es.functions.raiseDispute(oid, "again").transact({"from": env.seller})
    send(env.es.functions.resolveDispute(oid, True), env.arbiter)
    with reverts("InvalidStatus", orderId=oid, current=RESOLVED):
        env.es.functions.resolveDispute(oid, False).transact({"from": env.arbiter})


def test_cancel(env):
    oid = create(env)
    with reverts("NotBuyer", orderId=oid, caller=env.seller):
        env.es.functions.cancel(oid).transact({"from": env.seller})
    r = send(env.es.functions.cancel(oid), env.buyer)
    assert events(env.es, r, "Cancelled") == [{"orderId": oid}]
    assert status(env, oid) == CANCELLED
    with reverts("InvalidStatus", orderId=oid, current=CANCELLED):
        env.es.functions.fund(oid).transact({"from": env.buyer, "value": AMOUNT})
    oid2 = funded(env)
    with reverts("InvalidStatus", orderId=oid2, current=FUNDED):
        env.es.functions.cancel(oid2).transact({"from": env.buyer})
