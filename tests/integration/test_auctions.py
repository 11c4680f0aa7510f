"""Auctions end to end on anvil: the contract, the real indexer, the API, and the oracle's keeper settling ended
auctions exactly once through its outbox and sender.

End states covered: sold to the highest of several bids (one of them extending the end), unsold (no bid: the lot
goes back), settled by someone else before the keeper's write (the sender finds it done, not failed), and an ended
auction still open reported as stuck. Then: time travel, trades and marketStats counting the settlement, holdings,
and a certificate whose provenance shows AUCTION_SETTLED with the winning bid — equal to the chain-only rebuild."""

from __future__ import annotations

import pytest

from carbonledger.verify import verify_certificate
from oracle.keeper import settle_ended_auctions
from tests.integration.oracle_rig import Rig

pytestmark = pytest.mark.anvil
RESERVE, INC = 10, 2


@pytest.fixture()
def rig(anvil, db_url):
    r = Rig(db_url, anvil)
    try:
        yield r
    finally:
        r.close()


def _ts(w3):
    return w3.eth.get_block("latest").timestamp


def test_auctions_through_contract_indexer_api_and_keeper(rig, anvil):
    from gqlapi.testing import ApiClient
    from indexer.runner import chain_reader
    from indexer.testing import index_settings

    w3, dep, admin = rig.world.w3, rig.world.deployment, rig.world.admin
    cc, au = dep.contract(w3, "CarbonCredit"), dep.contract(w3, "Auction")
    seller, alice, bob, carol = w3.eth.accounts[3:7]
    batch = rig.world.batch_id

    def tx(call, sender, value=0):
        r = w3.eth.wait_for_transaction_receipt(call.transact({"from": sender, "value": value}), timeout=120)
        assert r["status"] == 1
        return r

    tx(cc.functions.mint(seller, batch, 100, b"\x44" * 32), admin)
    tx(cc.functions.setApprovalForAll(au.address, True), seller)
    end = _ts(w3) + 3600
    for amount in (40, 10, 5, 3):  # A: bid on; B: no bid; C: settled by someone else; D: left open (stuck)
        tx(au.functions.create(batch, amount, RESERVE, INC, end), seller)
    A, B, C, D = 1, 2, 3, 4
    tx(au.functions.bid(A, RESERVE), alice, RESERVE * 40)
    tx(au.functions.bid(A, RESERVE + INC), bob, (RESERVE + INC) * 40)
    tx(au.functions.bid(C, RESERVE), carol, RESERVE * 5)
    anvil.rpc("evm_setNextBlockTimestamp", [end - 10])  # inside the anti-sniping window
    late = tx(au.functions.bid(A, RESERVE + 2 * INC), bob, (RESERVE + 2 * INC) * 40)
    extended = w3.eth.get_block(late["blockNumber"]).timestamp + 300
    before_end = late["blockNumber"]
    anvil.rpc("evm_setNextBlockTimestamp", [extended + 1])
    anvil.rpc("anvil_mine", ["0x1"])
    rig.index()  # the keeper reads ended auctions from the index
    tx(au.functions.settle(C), carol)  # someone else settles C: the index still shows it active

    queued, stuck = settle_ended_auctions(rig.pool, "local", stuck_after_s=3600)
    assert (queued, stuck) == (4, 0)
    assert settle_ended_auctions(rig.pool, "local", stuck_after_s=3600)[0] == 0  # once: same idempotency keys
    with rig.pool.connection() as c:  # D's write is held back: it must show up as stuck
        c.execute("UPDATE oracle_intent SET status = 'failed', error = 'held by the test' "
                  "WHERE idempotency_key = 'auction:local:4'")
    rig.drain()
    assert [rig.status(f"auction:local:{i}") for i in (A, B, C)] == ["confirmed"] * 3
    with rig.pool.connection() as c:
        done = c.execute("SELECT already_on_chain FROM oracle_intent WHERE idempotency_key = 'auction:local:3'").fetchone()[0]
    assert done is True  # isSettled answered before sending: no second settle was sent
    assert [au.functions.isSettled(i).call() for i in (A, B, C, D)] == [True, True, True, False]
    rig.index()
    assert settle_ended_auctions(rig.pool, "local", stuck_after_s=0) == (0, 1)  # D: ended, open, its write failed

    tx(cc.functions.retire(batch, 7, "Bob's offsets", "2026"), bob)
    cert = cc.functions.certificateCount().call()
    rig.index()
    api = ApiClient(rig.db_url)
    try:
        q = """query($id: BigInt!, $block: BlockInput) { auction(id: $id, block: $block) {
                 status winner endsAt bidCount amount highestBid { bidder pricePerUnit endsAt } bids { pricePerUnit } } }"""
        a = api.q(q, {"id": str(A)})["auction"]
        assert a["status"] == "settled" and a["winner"].lower() == bob.lower() and a["bidCount"] == 3
        assert a["endsAt"] == extended and a["highestBid"]["pricePerUnit"] == str(RESERVE + 2 * INC)
        assert [b["pricePerUnit"] for b in a["bids"]] == [str(RESERVE + 2 * INC), str(RESERVE + INC), str(RESERVE)]
        past = api.q(q, {"id": str(A), "block": {"number": before_end}})["auction"]
        assert past["status"] == "active" and past["bidCount"] == 3 and past["endsAt"] == extended
        b = api.q(q, {"id": str(B)})["auction"]
        assert b["status"] == "unsold" and b["winner"] is None and b["highestBid"] is None
        assert api.q(q, {"id": str(C)})["auction"]["winner"].lower() == carol.lower()
        open_ = api.q("{ auctions(where: {status: \"active\"}) { nodes { auctionId } } }")["auctions"]["nodes"]
        assert open_ == [{"auctionId": str(D)}]

        trades = api.q("query($a: BigInt) { trades(where: {auctionId: $a}) { nodes { buyer seller amount pricePerUnit "
                       "listingId auctionId } } }", {"a": str(A)})["trades"]["nodes"]
        assert len(trades) == 1 and trades[0]["listingId"] is None and trades[0]["amount"] == "40"
        assert trades[0]["pricePerUnit"] == str(RESERVE + 2 * INC) and trades[0]["seller"].lower() == seller.lower()
        stats = api.q("query($b: BigInt!) { marketStats(batchId: $b, window: ALL) { tradeCount volume quoteVolume vwap } }",
                      {"b": str(batch)})["marketStats"]
        assert stats["tradeCount"] == 2 and stats["volume"] == "45"  # A (40) and C (5): auctions count in the stats
        assert int(stats["quoteVolume"]) == 40 * (RESERVE + 2 * INC) + 5 * RESERVE
        assert int(stats["vwap"]) == int(stats["quoteVolume"]) // 45

        port = api.q("query($o: String!) { portfolio(owner: $o) { holdings { batchId tradable listed } } }",
                     {"o": seller})["portfolio"]["holdings"]
        assert [(h["tradable"], h["listed"]) for h in port if h["batchId"] == str(batch)] == [("52", "3")]  # B back, D escrowed

        prov = api.q("query($c: BigInt!) { provenance(certificateId: $c) { events { kind fromAddress toAddress amount "
                     "pricePerUnit auctionId txHash logIndex } } }", {"c": str(cert)})["provenance"]["events"]
        settled = [e for e in prov if e["kind"] == "AUCTION_SETTLED"]
        assert len(settled) == 1 and settled[0]["auctionId"] == str(A) and settled[0]["fromAddress"].lower() == seller.lower()
        assert settled[0]["pricePerUnit"] == str(RESERVE + 2 * INC)
        # The auditor's rebuild from the chain alone tells the same story.
        cs = index_settings(anvil.url, dep, rig.db_url).chains["local"]
        reader, addresses, start = chain_reader("local", cs)
        report = verify_certificate(reader, cert, from_block=start, market=addresses["Marketplace"],
                                    auction=addresses["Auction"], finality_depth=0)
        assert report.ok, [c for c in report.checks if not c.ok]
        assert [(m.kind.upper(), m.tx_hash, m.log_index) for m in report.events] == [
            (e["kind"], e["txHash"], e["logIndex"]) for e in prov]
    finally:
        api.close()
