"""Auction: English auctions of credit lots — reserve, minimum increment, anti-sniping extension, pull refunds,
off-chain (fiat hold) bids by the oracle, settlement by anyone exactly once, and re-entrancy."""

from types import SimpleNamespace

import pytest
from eth_utils import keccak
from web3 import EthereumTesterProvider, Web3

from chains.evm.artifacts import load_artifact
from chains.evm.deploy import deploy_contract, deploy_protocol
from tests.unit.contracts_fixtures import _snapshot, events, reverts_for, send  # noqa: F401 (_snapshot: autouse fixture)

reverts = reverts_for("Auction")
RESERVE, INC, LOT, WINDOW = 10**12, 10**11, 10, 300
ZERO = "0x" + "0" * 40


@pytest.fixture(scope="module")
def env():
    w3 = Web3(EthereumTesterProvider())
    a = w3.eth.accounts
    dep = deploy_protocol(w3, a[0], roles={"ORACLE": [a[5]]}, auction_extension_s=WINDOW)
    e = SimpleNamespace(w3=w3, admin=a[0], seller=a[1], alice=a[2], bob=a[3], carol=a[4], oracle=a[5],
                        cc=dep.contract(w3, "CarbonCredit"), au=dep.contract(w3, "Auction"))
    r = send(e.cc.functions.createBatch("VCS-7", 2023, "VM0047", "Verra", "SN-7", keccak(text="m")), e.admin)
    e.batch = events(e.cc, r, "BatchCreated")[0]["batchId"]
    send(e.cc.functions.mint(e.seller, e.batch, 1000, keccak(text="v")), e.admin)
    send(e.cc.functions.setApprovalForAll(e.au.address, True), e.seller)
    attacker = deploy_contract(w3, a[0], "ReentrantBidder", e.au.address)
    e.evil = w3.eth.contract(address=attacker.address, abi=load_artifact("ReentrantBidder")["abi"])
    return e


def now(env):
    return env.w3.eth.get_block("latest").timestamp


def travel(env, ts):
    env.w3.testing.timeTravel(ts)
    env.w3.testing.mine()


def create(env, duration=3600, reserve=RESERVE, inc=INC, amount=LOT):
    r = send(env.au.functions.create(env.batch, amount, reserve, inc, now(env) + duration), env.seller)
    return events(env.au, r, "AuctionCreated")[0]


def bal(env, who):
    return env.cc.functions.balanceOf(who, env.batch).call()


def test_create_escrows_the_lot(env):
    a = create(env)
    assert a["auctionId"] == 1 and a["seller"] == env.seller and a["amount"] == LOT and a["reservePricePerUnit"] == RESERVE
    assert bal(env, env.au.address) == LOT and bal(env, env.seller) == 1000 - LOT
    with reverts("ZeroAmount"):
        env.au.functions.create(env.batch, 0, RESERVE, INC, now(env) + 60).transact({"from": env.seller})
    with reverts("ZeroIncrement"):
        env.au.functions.create(env.batch, 1, RESERVE, 0, now(env) + 60).transact({"from": env.seller})
    with reverts("EndInPast"):
        env.au.functions.create(env.batch, 1, RESERVE, INC, now(env) - 1).transact({"from": env.seller})
    with reverts("UnsolicitedTransfer", operator=env.seller):
        env.cc.functions.safeTransferFrom(env.seller, env.au.address, env.batch, 1, b"").transact({"from": env.seller})


def test_bids_respect_reserve_increment_payment_and_seller(env):
    aid = create(env)["auctionId"]
    with reverts("BidTooLow", minimumPricePerUnit=RESERVE, pricePerUnit=RESERVE - 1):
        env.au.functions.bid(aid, RESERVE - 1).transact({"from": env.alice, "value": (RESERVE - 1) * LOT})
    with reverts("WrongPayment", expected=RESERVE * LOT, got=RESERVE):
        env.au.functions.bid(aid, RESERVE).transact({"from": env.alice, "value": RESERVE})
    with reverts("SellerCannotBid"):
        env.au.functions.bid(aid, RESERVE).transact({"from": env.seller, "value": RESERVE * LOT})
    r = send(env.au.functions.bid(aid, RESERVE), env.alice, RESERVE * LOT)
    assert events(env.au, r, "BidPlaced")[0]["pricePerUnit"] == RESERVE
    with reverts("BidTooLow", minimumPricePerUnit=RESERVE + INC, pricePerUnit=RESERVE):  # equal to the current bid
        env.au.functions.bid(aid, RESERVE).transact({"from": env.bob, "value": RESERVE * LOT})
    with reverts("UnknownAuction"):
        env.au.functions.bid(99, RESERVE).transact({"from": env.bob, "value": RESERVE * LOT})


def test_outbid_bidders_withdraw_their_bid_once(env):
    aid = create(env)["auctionId"]
    send(env.au.functions.bid(aid, RESERVE), env.alice, RESERVE * LOT)
    send(env.au.functions.bid(aid, RESERVE + INC), env.bob, (RESERVE + INC) * LOT)
    assert env.au.functions.pendingReturns(env.alice).call() == RESERVE * LOT
    assert env.au.functions.pendingReturns(env.bob).call() == 0
    before = env.w3.eth.get_balance(env.alice)
    r = send(env.au.functions.withdraw(), env.alice)
    fee = r["gasUsed"] * r["effectiveGasPrice"]
    assert env.w3.eth.get_balance(env.alice) == before + RESERVE * LOT - fee
    with reverts("NothingToWithdraw", account=env.alice):
        env.au.functions.withdraw().transact({"from": env.alice})


def test_a_late_bid_extends_the_end(env):
    a = create(env, duration=3600)
    aid, end = a["auctionId"], a["endTime"]
    r = send(env.au.functions.bid(aid, RESERVE), env.alice, RESERVE * LOT)
    assert events(env.au, r, "BidPlaced")[0]["endTime"] == end  # early: unchanged
    travel(env, end - 10)
    r = send(env.au.functions.bid(aid, RESERVE + INC), env.bob, (RESERVE + INC) * LOT)
    got = events(env.au, r, "BidPlaced")[0]["endTime"]
    assert got == env.w3.eth.get_block(r["blockNumber"]).timestamp + WINDOW > end
    assert env.au.functions.lots(aid).call()[5] == got
    travel(env, end + 5)  # past the original end, before the extended one: still open
    send(env.au.functions.bid(aid, RESERVE + 2 * INC), env.carol, (RESERVE + 2 * INC) * LOT)


def test_settle_after_the_end_pays_the_seller_and_delivers_once(env):
    a = create(env)
    aid = a["auctionId"]
    send(env.au.functions.bid(aid, RESERVE), env.alice, RESERVE * LOT)
    send(env.au.functions.bid(aid, RESERVE + INC), env.bob, (RESERVE + INC) * LOT)
    with reverts("AuctionNotEnded"):
        env.au.functions.settle(aid).transact({"from": env.carol})
    travel(env, a["endTime"])
    with reverts("AuctionEnded"):
        env.au.functions.bid(aid, RESERVE + 2 * INC).transact({"from": env.carol, "value": (RESERVE + 2 * INC) * LOT})
    r = send(env.au.functions.settle(aid), env.carol)  # anyone
    assert events(env.au, r, "AuctionSettled") == [{"auctionId": aid, "winner": env.bob, "seller": env.seller,
                                                    "batchId": env.batch, "amount": LOT,
                                                    "pricePerUnit": RESERVE + INC, "paymentRef": ""}]
    assert bal(env, env.bob) == LOT and bal(env, env.au.address) == 0
    assert env.au.functions.pendingReturns(env.seller).call() == (RESERVE + INC) * LOT
    with reverts("AlreadySettled", auctionId=aid):
        env.au.functions.settle(aid).transact({"from": env.carol})
    assert env.w3.eth.get_balance(env.au.address) == (RESERVE + INC) * LOT + RESERVE * LOT  # seller's + alice's
    send(env.au.functions.withdraw(), env.seller)
    send(env.au.functions.withdraw(), env.alice)
    assert env.w3.eth.get_balance(env.au.address) == 0


def test_no_bid_returns_the_lot_to_the_seller(env):
    a = create(env)
    travel(env, a["endTime"] + 1)
    r = send(env.au.functions.settle(a["auctionId"]), env.alice)
    assert events(env.au, r, "AuctionSettled")[0]["winner"] == ZERO
    assert bal(env, env.seller) == 1000 and env.au.functions.pendingReturns(env.seller).call() == 0


def test_offchain_bids_by_the_oracle_only_and_once_per_payment(env):
    a = create(env)
    aid = a["auctionId"]
    with pytest.raises(Exception):
        env.au.functions.bidOffchain(aid, env.alice, RESERVE, "pi_1").transact({"from": env.alice})
    with reverts("EmptyPaymentRef"):
        env.au.functions.bidOffchain(aid, env.alice, RESERVE, "").transact({"from": env.oracle})
    r = send(env.au.functions.bidOffchain(aid, env.alice, RESERVE, "pi_1"), env.oracle)
    assert events(env.au, r, "BidPlaced")[0]["paymentRef"] == "pi_1"
    with reverts("PaymentRefUsed", paymentRef="pi_1"):
        env.au.functions.bidOffchain(aid, env.bob, RESERVE + INC, "pi_1").transact({"from": env.oracle})
    send(env.au.functions.bid(aid, RESERVE + INC), env.bob, (RESERVE + INC) * LOT)
    assert env.au.functions.pendingReturns(env.alice).call() == 0  # a fiat hold is released off chain
    send(env.au.functions.bidOffchain(aid, env.carol, RESERVE + 2 * INC, "pi_2"), env.oracle)
    assert env.au.functions.pendingReturns(env.bob).call() == (RESERVE + INC) * LOT
    travel(env, a["endTime"])
    r = send(env.au.functions.settle(aid), env.alice)
    assert events(env.au, r, "AuctionSettled")[0]["paymentRef"] == "pi_2"
    assert bal(env, env.carol) == LOT and env.au.functions.pendingReturns(env.seller).call() == 0  # paid in fiat


def test_reentrant_withdraw_and_settle_are_refused(env):
    a = create(env)
    aid = a["auctionId"]
    send(env.evil.functions.bid(aid, RESERVE), env.alice, RESERVE * LOT)
    send(env.au.functions.bid(aid, RESERVE + INC), env.bob, (RESERVE + INC) * LOT)
    send(env.evil.functions.setMode(1, 0, False), env.alice)
    send(env.evil.functions.withdraw(), env.alice)  # receive() tries withdraw() again
    assert not env.evil.functions.reentered().call()
    assert env.evil.functions.reentryError().call()[:4] == keccak(text="ReentrancyGuardReentrantCall()")[:4]
    assert env.w3.eth.get_balance(env.evil.address) == RESERVE * LOT  # paid once
    # The attacker wins the next auction and tries to settle it again while receiving the lot.
    b = create(env)
    send(env.evil.functions.bid(b["auctionId"], RESERVE), env.alice, RESERVE * LOT)
    send(env.evil.functions.setMode(2, b["auctionId"], False), env.alice)
    travel(env, b["endTime"])
    send(env.au.functions.settle(b["auctionId"]), env.carol)
    assert not env.evil.functions.reentered().call() and bal(env, env.evil.address) == LOT


def test_a_bidder_refusing_payment_cannot_block_being_outbid(env):
    aid = create(env)["auctionId"]
    send(env.evil.functions.setMode(0, 0, True), env.alice)
    send(env.evil.functions.bid(aid, RESERVE), env.alice, RESERVE * LOT)
    send(env.au.functions.bid(aid, RESERVE + INC), env.bob, (RESERVE + INC) * LOT)  # no push: nothing to refuse
    assert env.au.functions.pendingReturns(env.evil.address).call() == RESERVE * LOT
    with reverts("EthTransferFailed"):
        env.evil.functions.withdraw().transact({"from": env.alice})
    assert env.au.functions.pendingReturns(env.evil.address).call() == RESERVE * LOT  # still owed


def test_a_winner_refusing_the_lot_cannot_block_the_settlement(env):
    """A winner that cannot receive ERC-1155 tokens (here the credit token contract itself, bid for by the oracle)
    does not keep the auction open: settle goes through, the seller is paid, the lot waits to be claimed."""
    a = create(env)
    aid = a["auctionId"]
    send(env.au.functions.bidOffchain(aid, env.cc.address, RESERVE, "pi_refuser"), env.oracle)
    send(env.au.functions.bid(aid, RESERVE + INC), env.bob, (RESERVE + INC) * LOT)
    send(env.evil.functions.setMode(0, 0, True), env.alice)  # a contract winner that also refuses ETH
    send(env.evil.functions.bid(aid, RESERVE + 2 * INC), env.alice, (RESERVE + 2 * INC) * LOT)
    b = create(env)
    send(env.au.functions.bidOffchain(b["auctionId"], env.cc.address, RESERVE, "pi_refuser_2"), env.oracle)
    travel(env, b["endTime"])
    r = send(env.au.functions.settle(b["auctionId"]), env.carol)
    assert events(env.au, r, "LotUnclaimed") == [{"auctionId": b["auctionId"], "winner": env.cc.address}]
    assert events(env.au, r, "AuctionSettled")[0]["winner"] == env.cc.address
    assert env.au.functions.isSettled(b["auctionId"]).call() and bal(env, env.au.address) == 2 * LOT
    with reverts("NoUnclaimedLot"):
        env.au.functions.claimLot(b["auctionId"], env.carol).transact({"from": env.carol})
    # The other auction's winner (evil, which accepts ERC-1155 but not ETH) receives its lot normally.
    send(env.au.functions.settle(aid), env.carol)
    assert bal(env, env.evil.address) == LOT and env.au.functions.unclaimedLots(aid).call() == ZERO
