"""Fiat bids on auctions: a Stripe payment hold (capture_method=manual) becomes `Auction.bidOffchain` through the
oracle's gate; the hold is released when the bid is outbid or refused, and captured when it wins (localstripe, anvil,
the real indexer, keeper, sender and holds job)."""

from __future__ import annotations

import asyncio

import pytest

from oracle.holds import settle_holds
from oracle.ingress.stripe_webhook import HOLD_EVENT
from oracle.keeper import settle_ended_auctions
from oracle.testing import payment_event
from tests.integration.oracle_fixtures import localstripe  # noqa: F401 - fixture
from tests.integration.oracle_rig import Rig

pytestmark = pytest.mark.anvil
RESERVE, INC, LOT = 100, 10, 10  # wei per credit; FIAT_RATES: 1 USD cent buys 1 wei x 100 / 100


@pytest.fixture()
def rig(db_url, anvil, localstripe):
    r = Rig(db_url, anvil, stripe=localstripe)
    yield r
    r.close()


def test_fiat_bids_are_holds_captured_when_they_win_and_released_otherwise(rig, anvil, localstripe):
    w3, dep, admin = rig.world.w3, rig.world.deployment, rig.world.admin
    cc, au = dep.contract(w3, "CarbonCredit"), dep.contract(w3, "Auction")
    seller, alice, bob, carol = w3.eth.accounts[3], w3.eth.accounts[4], w3.eth.accounts[5], w3.eth.accounts[6]

    def tx(call, sender, value=0):
        r = w3.eth.wait_for_transaction_receipt(call.transact({"from": sender, "value": value}), timeout=120)
        assert r["status"] == 1

    tx(cc.functions.mint(seller, rig.world.batch_id, LOT, b"\x55" * 32), admin)
    tx(cc.functions.setApprovalForAll(au.address, True), seller)
    end = w3.eth.get_block("latest").timestamp + 3600
    tx(au.functions.create(rig.world.batch_id, LOT, RESERVE, INC, end), seller)
    rig.index()

    def bid(who: str, price: int, cents: int) -> tuple[str, dict]:
        meta = {"auction_id": "1", "bidder": who, "price_per_unit": str(price)}
        pi = localstripe.payment_intent(meta, cents, "usd", hold=True)
        assert pi["status"] == "requires_capture"
        event = payment_event(pi["id"], meta, amount=cents)
        event["type"], event["data"]["object"] = HOLD_EVENT, pi
        r = asyncio.run(rig.post_event(event))
        assert r.status_code == 200, r.text
        return pi["id"], r.json()

    def holds():
        """A holds round once what happened is final (the rig indexes with finality depth 8)."""
        anvil.mine(9)
        rig.index()
        return settle_holds(rig.pool, "local", rig.settings)

    def status(pi_id: str) -> str:
        return localstripe.client().v1.payment_intents.retrieve(pi_id).status

    a_pi, a = bid(alice, RESERVE, RESERVE * LOT)  # 1,000 cents cover 100 wei x 10 credits
    assert a["outcome"] == "accepted", _problem(rig, a)
    low_pi, low = bid(carol, RESERVE + INC - 1, 2000)  # below alice's bid + the increment: refused, hold kept for now
    assert low["outcome"] == "flagged" and low["flag"] == "bid_too_low", low
    short_pi, short = bid(carol, RESERVE + 5 * INC, 100)  # the hold does not cover the bid
    assert short["outcome"] == "flagged" and short["flag"] == "amount_mismatch", short
    rig.drain()
    rig.index()
    assert au.functions.lots(1).call()[6] == alice  # highestBidder: the fiat bid is on chain
    tx(au.functions.bid(1, RESERVE + INC), bob, (RESERVE + INC) * LOT)  # bob outbids alice with ETH
    rig.index()
    # The refused bids' holds go at once; alice's waits until her being outbid is final (a cancelled hold cannot be
    # restored if a reorg changed the outcome).
    assert settle_holds(rig.pool, "local", rig.settings) == {"captured": 0, "released": 2, "failed": 0}
    assert holds() == {"captured": 0, "released": 1, "failed": 0}
    assert [status(p) for p in (a_pi, low_pi, short_pi)] == ["canceled"] * 3

    c_pi, c = bid(carol, RESERVE + 2 * INC, (RESERVE + 2 * INC) * LOT)
    assert c["outcome"] == "accepted", c
    rig.drain()
    rig.index()
    assert holds() == {"captured": 0, "released": 0, "failed": 0}  # leading
    anvil.rpc("evm_setNextBlockTimestamp", [end + 1])
    anvil.rpc("anvil_mine", ["0x1"])
    rig.index()
    assert settle_ended_auctions(rig.pool, "local", stuck_after_s=3600)[0] == 1
    rig.drain()
    assert holds() == {"captured": 1, "released": 0, "failed": 0}
    assert status(c_pi) == "succeeded" and cc.functions.balanceOf(carol, rig.world.batch_id).call() == LOT
    assert au.functions.pendingReturns(bob).call() == (RESERVE + INC) * LOT  # bob's ETH waits for his withdraw
    assert au.functions.pendingReturns(seller).call() == 0  # carol paid in fiat: the seller is paid off chain
    assert holds() == {"captured": 0, "released": 0, "failed": 0}  # once
    # Stripe then tells of the captured PaymentIntent (`succeeded`): the winner's payment, recorded, no refund flag.
    meta = {"auction_id": "1", "bidder": carol, "price_per_unit": str(RESERVE + 2 * INC)}
    paid = payment_event(c_pi, meta, amount=(RESERVE + 2 * INC) * LOT, event_id="evt_captured_winner")
    paid["data"]["object"] = localstripe.client().v1.payment_intents.retrieve(c_pi).to_dict()
    r = asyncio.run(rig.post_event(paid)).json()
    assert r["outcome"] == "recorded" and r["flag"] is None, r


def _problem(rig, reply):
    with rig.pool.connection() as c:
        return reply, c.execute("SELECT flag, summary FROM oracle_provider_event WHERE event_id = %s",
                                (reply["event"],)).fetchone()


def test_a_hold_whose_webhook_was_lost_is_found_by_reconciliation(db_url, anvil, localstripe):
    """Stripe's amount_capturable_updated never arrived: reconciliation lists the hold (requires_capture, not
    succeeded) and decides it through the same gate, once; the bid lands on chain."""
    from oracle.reconciliation import reconcile_stripe

    rig = Rig(db_url, anvil, stripe=localstripe, reconcile_lookback_s=600)
    try:
        w3, au, alice = rig.world.w3, _auction(rig, 3600), rig.world.w3.eth.accounts[4]
        meta = {"auction_id": "1", "bidder": alice, "price_per_unit": str(RESERVE)}
        pi = localstripe.payment_intent(meta, RESERVE * LOT, "usd", hold=True)
        assert pi["status"] == "requires_capture"
        assert reconcile_stripe(rig.pool, "local", rig.settings) == 1
        assert reconcile_stripe(rig.pool, "local", rig.settings) == 0  # decided once
        rig.drain()
        assert rig.status(f"stripe:{pi['id']}") == "confirmed"
        assert au.functions.lots(1).call()[6] == alice  # highestBidder: the fiat bid is on chain
        assert localstripe.client().v1.payment_intents.retrieve(pi["id"]).status == "requires_capture"  # held, not taken
    finally:
        rig.close()


def _auction(rig: Rig, ends_in_s: int):
    """Auction 1 of LOT credits from accounts[3], ending `ends_in_s` after the chain's time; indexed."""
    w3, dep, admin = rig.world.w3, rig.world.deployment, rig.world.admin
    cc, au = dep.contract(w3, "CarbonCredit"), dep.contract(w3, "Auction")
    seller = w3.eth.accounts[3]
    for call, sender in ((cc.functions.mint(seller, rig.world.batch_id, LOT, b"\x55" * 32), admin),
                         (cc.functions.setApprovalForAll(au.address, True), seller),
                         (au.functions.create(rig.world.batch_id, LOT, RESERVE, INC,
                                              w3.eth.get_block("latest").timestamp + ends_in_s), seller)):
        assert w3.eth.wait_for_transaction_receipt(call.transact({"from": sender}), timeout=120)["status"] == 1
    rig.index()
    return au


def test_a_card_hold_is_no_bid_on_an_auction_that_outlasts_it(rig, anvil, localstripe):
    """Card authorisations lapse after about 7 days: a hold bid on an auction ending later than
    oracle.fiat_bid_max_hold_s (6 days) is flagged hold_would_lapse, never written, and its hold released."""
    au, alice = _auction(rig, 8 * 86400), rig.world.w3.eth.accounts[4]
    meta = {"auction_id": "1", "bidder": alice, "price_per_unit": str(RESERVE)}
    pi = localstripe.payment_intent(meta, RESERVE * LOT, "usd", hold=True)
    event = payment_event(pi["id"], meta, amount=RESERVE * LOT)
    event["type"], event["data"]["object"] = HOLD_EVENT, pi
    r = asyncio.run(rig.post_event(event))
    assert r.status_code == 200 and r.json()["flag"] == "hold_would_lapse", r.text
    assert "later than a card hold lasts" in str(_problem(rig, r.json()))
    rig.drain()
    assert rig.status(f"stripe:{pi['id']}") is None  # no write
    assert settle_holds(rig.pool, "local", rig.settings)["released"] == 1
    assert localstripe.client().v1.payment_intents.retrieve(pi["id"]).status == "canceled"
    assert au.functions.lots(1).call()[6] == "0x" + "0" * 40  # no bidder on chain
