"""Every root field on hand-built indexer rows (gqlapi.testing.World): values, filters, pagination, time travel."""

from __future__ import annotations

import pytest

from gqlapi.testing import ApiClient, World, addr, h

A, B, C, D = addr(1), addr(2), addr(3), addr(4)


@pytest.fixture(scope="module")
def world(pg_factory):
    """Blocks: 1 batch 7, 2 batch 8, 3 mint A 1000×7, 4 mint A 500×8, 5 A→B 300×7, 6 B lists 200@5, 7 C buys 50 (fiat),
    8 D buys 30, 9 C retires 20 (cert 1), 10 A lists 100×8@9, 11 cancel, 12.. escrow, QR, IoT, trades for stats."""
    url = pg_factory.fresh()
    w = World(url)
    w.create_batch(7, project="PRJ-A", vintage=2023)
    w.create_batch(8, project="PRJ-B", vintage=2024)
    w.mint(A, 7, 1000, verification=h("verifier", 7))
    w.mint(A, 8, 500)
    w.marks = {"transfer": w.number + 1}
    w.transfer(A, B, 7, 300)
    lid = w.list(B, 7, 200, 5)
    w.buy(C, lid, 50, payment_ref="pi_123")
    w.buy(D, lid, 30)
    w.marks["retire"] = w.number + 1
    w.retire(C, 7, 20, beneficiary="Acme", reason="2025 offset")
    lid2 = w.list(A, 8, 100, 9)
    w.cancel(lid2)
    w.order(1, "created", C, buyer=C, seller=D, amount=10**18)
    w.order(1, "funded", C, payment_ref="mpesa-1")
    w.order(1, "shipped", D)
    w.order(2, "created", A, buyer=A, seller=B, amount=5)
    w.qr_pay(h("order", 1), C, 777)
    w.qr_settle(h("orderdata", 1), D, 700)
    for i in range(3):
        w.anchor(i + 1, h("root", i), 16 * (i + 1), 1000 * i, 1000 * i + 999, 90 + i)
    lid3 = w.list(A, 7, 100, 7)
    w.buy(D, lid3, 10)
    w.buy(D, lid3, 10)
    w.lid = lid
    w.url = url
    yield w
    w.close()
    pg_factory.drop(url)


@pytest.fixture(scope="module")
def api(world):
    client = ApiClient(world.url, max_page_size=50)
    yield client
    client.close()


def test_portfolio_holdings_values_and_certificates(api):
    d = api.q("""query($o: String!) { portfolio(owner: $o) { owner totals { batches tradable listed retired balance value }
        holdings { batchId tradable listed retired balance lastPrice value batch { projectId vintage } }
        certificates { id amount beneficiary batch { projectId } } } }""", {"o": C.upper().replace("0X", "0x")})
    p = d["portfolio"]
    assert p["owner"] == "0x0000000000000000000000000000000000000003"
    assert p["holdings"] == [{"batchId": "7", "tradable": "30", "listed": "0", "retired": "20", "balance": "30",
                              "lastPrice": "7", "value": "210", "batch": {"projectId": "PRJ-A", "vintage": 2023}}]
    assert p["totals"] == {"batches": 1, "tradable": "30", "listed": "0", "retired": "20", "balance": "30", "value": "210"}
    assert p["certificates"] == [{"id": "1", "amount": "20", "beneficiary": "Acme", "batch": {"projectId": "PRJ-A"}}]
    b = api.q('query($o: String!) { portfolio(owner: $o) { holdings { batchId tradable listed } } }', {"o": B})
    assert b["portfolio"]["holdings"] == [{"batchId": "7", "tradable": "100", "listed": "120"}]
    assert api.q('{ portfolio(owner: "%s", chain: "other") { holdings { batchId } } }' % A)["portfolio"]["holdings"] == []


def test_time_travel_before_and_after_transfer_and_retirement(api, world):
    q = 'query($o: String!, $n: Int!) { portfolio(owner: $o, block: {number: $n}) { holdings { batchId tradable retired } } }'
    t, r = world.marks["transfer"], world.marks["retire"]
    assert api.q(q, {"o": B, "n": t - 1})["portfolio"]["holdings"] == []
    assert api.q(q, {"o": B, "n": t})["portfolio"]["holdings"] == [{"batchId": "7", "tradable": "300", "retired": "0"}]
    assert api.q(q, {"o": A, "n": t - 1})["portfolio"]["holdings"][0]["tradable"] == "1000"
    assert api.q(q, {"o": C, "n": r - 1})["portfolio"]["holdings"] == [{"batchId": "7", "tradable": "50", "retired": "0"}]
    assert api.q(q, {"o": C, "n": r})["portfolio"]["holdings"] == [{"batchId": "7", "tradable": "30", "retired": "20"}]
    certs = 'query($n: Int!) { certificates(block: {number: $n}) { nodes { id } } }'
    assert api.q(certs, {"n": r - 1})["certificates"]["nodes"] == []
    assert api.q(certs, {"n": r})["certificates"]["nodes"] == [{"id": "1"}]
    # The batch's totals travel too, and listings show their state at that block.
    bq = 'query($n: Int!) { certificate(id: "1", block: {number: $n}) { batch { totalRetired } } }'
    assert api.q(bq, {"n": r})["certificate"]["batch"]["totalRetired"] == "20"
    lq = 'query($n: Int!) { listings(where: {listingId: "1"}, block: {number: $n}) { nodes { amountRemaining status } } }'
    assert api.q(lq, {"n": t + 1})["listings"]["nodes"] == [{"amountRemaining": "200", "status": "active"}]
    assert api.q(lq, {"n": world.number})["listings"]["nodes"] == [{"amountRemaining": "120", "status": "active"}]
    errs = api.errors('{ portfolio(owner: "%s", block: {number: 99999}) { owner } }' % A)
    assert errs == [f"block 99999 is not indexed yet (latest indexed block: {world.number})"]


def test_certificate_with_provenance_is_the_custody_chain(api, world):
    d = api.q('{ certificate(id: "1") { id holder beneficiary reason amount txHash blockNumber time batch { serialNumber } '
              'provenance { kind fromAddress toAddress amount verificationHash paymentRef listingId pricePerUnit certificateId } } }')
    c = d["certificate"]
    assert (c["holder"], c["beneficiary"], c["reason"], c["amount"], c["blockNumber"]) == (
        "0x0000000000000000000000000000000000000003", "Acme", "2025 offset", "20", world.marks["retire"])
    kinds = [(e["kind"], e["amount"]) for e in c["provenance"]]
    assert kinds == [("MINT", "1000"), ("TRANSFER", "300"), ("LIST", "200"), ("SALE", "50"), ("RETIREMENT", "20")]
    mint, _, lst, sale, ret = c["provenance"]
    assert mint["verificationHash"] == h("verifier", 7)
    assert (lst["listingId"], lst["pricePerUnit"]) == ("1", "5")
    assert (sale["fromAddress"], sale["paymentRef"], sale["pricePerUnit"]) == ("0x0000000000000000000000000000000000000002", "pi_123", "5")
    assert ret["certificateId"] == "1"
    assert api.q('{ certificate(id: "99") { id } }')["certificate"] is None


CERT_FIELDS = ("id holder amount serialRange batch { serialNumber projectId totalMinted } provenance { kind txHash blockNumber "
               "logIndex timestamp time fromAddress toAddress amount verificationHash paymentRef listingId auctionId "
               "pricePerUnit certificateId beneficiary reason requestedBy approvedBy approvedAt }")


def test_certificate_with_batch_and_provenance_is_one_statement_answering_as_the_loaders_do(api, world):
    before = api.db.statements
    one = api.q('{ certificate(id: "1") { %s } }' % CERT_FIELDS)["certificate"]
    assert api.db.statements - before == 1
    assert [e["kind"] for e in one["provenance"]] == ["MINT", "TRANSFER", "LIST", "SALE", "RETIREMENT"]
    # The same certificate through the DataLoaders (a page of certificates: one batched query per relation).
    page = api.q('{ certificates(first: 50) { nodes { %s } } }' % CERT_FIELDS)["certificates"]["nodes"]
    assert [n for n in page if n["id"] == "1"] == [one]
    # Fragments and inline fragments are looked through; an alias, a skipped field and the root provenance agree.
    frag = ('query($no: Boolean!) { certificate(id: "1") { ...F ... on Certificate { p2: provenance { kind } } '
            'b2: batch @skip(if: $no) { projectId } } } fragment F on Certificate { %s }' % CERT_FIELDS)
    d = api.q(frag, {"no": True})["certificate"]
    assert {k: v for k, v in d.items() if k != "p2"} == one and [e["kind"] for e in d["p2"]] == [e["kind"] for e in one["provenance"]]
    root = api.q('{ provenance(certificateId: "1") { certificate { id } events { kind amount txHash } } }')["provenance"]
    assert [(e["kind"], e["amount"], e["txHash"]) for e in root["events"]] == [(e["kind"], e["amount"], e["txHash"]) for e in one["provenance"]]
    # Time travel: at the retirement block the same; before it, no certificate.
    at = world.marks["retire"]
    assert api.q('{ certificate(id: "1", block: {number: %d}) { %s } }' % (at, CERT_FIELDS))["certificate"] == one
    assert api.q('{ certificate(id: "1", block: {number: %d}) { id provenance { kind } } }' % (at - 1))["certificate"] is None
    assert api.q('{ provenance(certificateId: "1", block: {number: %d}) { events { kind } } }' % (at - 1))["provenance"] is None


def test_provenance_of_batch_and_owner(api):
    q = 'query($o: String) { provenance(batchId: "7", owner: $o) { chain batch { projectId } truncated events { kind blockNumber logIndex } } }'
    allp = api.q(q, {"o": None})["provenance"]
    assert [e["kind"] for e in allp["events"]] == ["MINT", "TRANSFER", "LIST", "SALE", "SALE", "RETIREMENT", "LIST", "SALE", "SALE"]
    assert allp["events"] == sorted(allp["events"], key=lambda e: (e["blockNumber"], e["logIndex"]))
    d = api.q(q, {"o": D})["provenance"]
    assert [e["kind"] for e in d["events"]] == ["MINT", "TRANSFER", "LIST", "SALE", "LIST", "SALE", "SALE"]
    assert api.q('{ provenance(batchId: "7", first: 2) { truncated events { kind } } }')["provenance"]["truncated"] is True
    assert api.errors('{ provenance { chain } }') == ["provenance: pass exactly one of batchId or certificateId"]
    cp = api.q('{ provenance(certificateId: "1") { owner certificate { id } events { kind } } }')["provenance"]
    assert cp["certificate"] == {"id": "1"} and cp["events"][-1]["kind"] == "RETIREMENT"


def test_market_stats_and_candles(api, world):
    d = api.q('{ marketStats(batchId: "7", window: ALL) { volume quoteVolume tradeCount vwap open lastPrice high low change '
              'changePercent floor openListings listedAmount } }')["marketStats"]
    assert d == {"volume": "100", "quoteVolume": "540", "tradeCount": 4, "vwap": "5", "open": "5", "lastPrice": "7",
                 "high": "7", "low": "5", "change": "2", "changePercent": "40.00", "floor": "5", "openListings": 2,
                 "listedAmount": "200"}
    proj = api.q('{ marketStats(projectId: "PRJ-B", window: ALL) { tradeCount floor openListings } }')["marketStats"]
    assert proj == {"tradeCount": 0, "floor": None, "openListings": 0}
    # As of the block after the first sale, a one-hour window ending at that block's time.
    n = world.marks["retire"] - 2
    s = api.q('query($n: Int!) { marketStats(batchId: "7", window: HOUR, block: {number: $n}) { tradeCount lastPrice floor } }',
              {"n": n})["marketStats"]
    assert s == {"tradeCount": 1, "lastPrice": "5", "floor": "5"}
    c = api.q('{ candles(batchId: "7", interval: MINUTE, from: 1700000000, to: 1700002000) { start open high low close volume trades } }')
    candles = c["candles"]
    assert sum(int(x["volume"]) for x in candles) == 100 and sum(x["trades"] for x in candles) == 4
    assert all(x["start"] % 60 == 0 for x in candles) and candles[0]["open"] == "5" and candles[-1]["close"] == "7"
    assert "at most 50" in api.errors('{ candles(batchId: "7", interval: MINUTE, from: 0, to: 1700000000) { start } }')[0]


def test_trades_filters_and_pagination(api):
    q = """query($w: TradeFilter, $o: TradeOrder, $f: Int, $a: String) { trades(where: $w, orderBy: $o, first: $f, after: $a) {
           edges { cursor node { amount pricePerUnit paymentRef offchain buyer } } pageInfo { hasNextPage hasPreviousPage endCursor } } }"""
    seen, after = [], None
    while True:
        page = api.q(q, {"f": 1, "a": after, "o": "OLDEST"})["trades"]
        seen += [e["node"]["amount"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == ["50", "30", "10", "10"]
    assert page["pageInfo"]["hasPreviousPage"] is True
    # Mixed ordering with ties on price: paging covers every trade once.
    got, after = [], None
    for _ in range(5):
        page = api.q(q, {"f": 3, "a": after, "o": "PRICE_DESC"})["trades"]
        got += [(e["node"]["pricePerUnit"], e["node"]["amount"]) for e in page["edges"]]
        after = page["pageInfo"]["endCursor"]
        if not page["pageInfo"]["hasNextPage"]:
            break
    assert got == [("7", "10"), ("7", "10"), ("5", "30"), ("5", "50")]
    empty = api.q(q, {"f": 0})["trades"]
    assert empty["edges"] == [] and empty["pageInfo"]["hasNextPage"] is True and empty["pageInfo"]["endCursor"] is None
    off = api.q(q, {"w": {"offchain": True}})["trades"]["edges"]
    assert [e["node"]["paymentRef"] for e in off] == ["pi_123"]
    assert len(api.q(q, {"w": {"buyer": D}})["trades"]["edges"]) == 3
    assert len(api.q(q, {"w": {"participant": B}})["trades"]["edges"]) == 2
    assert len(api.q(q, {"w": {"projectId": "PRJ-A", "since": 0}})["trades"]["edges"]) == 4
    # Backwards (Relay last/before): the same trades, pages in forward order.
    back = """query($l: Int, $b: String) { trades(orderBy: OLDEST, last: $l, before: $b) {
              edges { node { amount } } pageInfo { hasNextPage hasPreviousPage startCursor } } }"""
    got, before = [], None
    while True:
        page = api.q(back, {"l": 3, "b": before})["trades"]
        got = [e["node"]["amount"] for e in page["edges"]] + got
        assert page["pageInfo"]["hasNextPage"] is (before is not None)
        if not page["pageInfo"]["hasPreviousPage"]:
            break
        before = page["pageInfo"]["startCursor"]
    assert got == ["50", "30", "10", "10"]
    assert api.errors("{ trades(first: 1, last: 1) { nodes { amount } } }") == ["pass `first` or `last`, not both"]
    oldest = api.q(q, {"o": "OLDEST", "f": 1})["trades"]["pageInfo"]["endCursor"]
    assert "belongs to orderBy OLDEST" in api.errors(q, {"o": "NEWEST", "a": oldest})[0]


def test_listings_orders_qr_iot_meta(api, world):
    ls = api.q('{ listings(where: {status: "active"}, orderBy: PRICE_ASC) { nodes { listingId seller pricePerUnit amountSold batch { projectId } } } }')
    assert [(n["listingId"], n["pricePerUnit"]) for n in ls["listings"]["nodes"]] == [("1", "5"), ("3", "7")]
    assert api.q('{ listings(where: {statusIn: ["cancelled"]}) { nodes { listingId amountRemaining } } }')["listings"]["nodes"] == [
        {"listingId": "2", "amountRemaining": "0"}]
    eo = api.q('query($p: String) { escrowOrders(where: {party: $p}) { nodes { orderId status fundedOffchain paymentRef '
               'history { event actor paymentRef } } } }', {"p": D})["escrowOrders"]["nodes"]
    assert eo == [{"orderId": "1", "status": "shipped", "fundedOffchain": True, "paymentRef": "mpesa-1", "history": [
        {"event": "created", "actor": "0x0000000000000000000000000000000000000003", "paymentRef": None},
        {"event": "funded", "actor": "0x0000000000000000000000000000000000000003", "paymentRef": "mpesa-1"},
        {"event": "shipped", "actor": "0x0000000000000000000000000000000000000004", "paymentRef": None}]}]
    assert len(api.q('{ escrowOrders(where: {statusIn: ["created", "shipped"]}) { nodes { orderId } } }')["escrowOrders"]["nodes"]) == 2
    qr = api.q('query($h: String) { qrPayments(where: {orderHash: $h}) { nodes { payer amount } } '
               'settlements { nodes { beneficiary amount orderDataHash } } }', {"h": h("order", 1)})
    assert qr["qrPayments"]["nodes"] == [{"payer": "0x0000000000000000000000000000000000000003", "amount": "777"}]
    assert qr["settlements"]["nodes"][0]["amount"] == "700"
    iot = api.q('{ iotAnchors(where: {windowFrom: 1500, minQuality: 91}, orderBy: OLDEST) { nodes { anchorId leafCount windowStartTime } } }')
    assert iot["iotAnchors"]["nodes"] == [{"anchorId": "2", "leafCount": 32, "windowStartTime": "1970-01-01T00:16:40Z"},
                                         {"anchorId": "3", "leafCount": 48, "windowStartTime": "1970-01-01T00:33:20Z"}]
    meta = api.q('{ _meta { chain block { number hash timestamp } finalizedBlock hasIndexingErrors } }')["_meta"]
    assert meta == [{"chain": "devnet", "block": {"number": world.number, "hash": world.block_hashes[world.number],
                     "timestamp": world.ts}, "finalizedBlock": world.number - 2, "hasIndexingErrors": False}]


def test_certificates_filters_and_ordering(api):
    q = 'query($w: CertificateFilter) { certificates(where: $w, orderBy: AMOUNT_DESC) { nodes { id } } }'
    assert api.q(q, {"w": {"holder": C}})["certificates"]["nodes"] == [{"id": "1"}]
    assert api.q(q, {"w": {"beneficiary": "nobody"}})["certificates"]["nodes"] == []
    assert api.q(q, {"w": {"projectId": "PRJ-A", "batchId": "7"}})["certificates"]["nodes"] == [{"id": "1"}]


OPERATION_VARIABLES = {
    "portfolio": {"owner": C},
    "certificate": {"id": "1"},
    "certificates": {"where": {"holder": C}, "first": 10},
    "provenance": {"certificateId": "1"},
    "market_stats": {"batchId": "7", "window": "ALL"},
    "candles": {"batchId": "7", "interval": "HOUR", "from": 1699990000, "to": 1700090000},
    "listings": {"where": {"status": "active", "batchId": "7"}, "orderBy": "PRICE_ASC", "first": 5},
    "trades": {"where": {"batchId": "7"}, "first": 2},
    "escrow_orders": {"where": {"party": D}},
    "qr": {"payments": {"payer": C}, "settlements": {"beneficiary": D}, "first": 5},
    "iot": {"where": {"minQuality": 90}, "first": 2},
    "meta": {},
}


def test_every_operation_file_runs(api):
    """graphql/operations/*.graphql are the queries frontends and auditors run: each answers, with data."""
    from pathlib import Path

    ops = sorted((Path(__file__).resolve().parents[2] / "graphql" / "operations").glob("*.graphql"))
    assert {p.stem for p in ops} == set(OPERATION_VARIABLES)
    for path in ops:
        data = api.q(path.read_text(), OPERATION_VARIABLES[path.stem])
        (field, value), = ((k, v) for k, v in data.items() if k != "settlements") if path.stem == "qr" else data.items()
        assert value, (path.name, data)
        if isinstance(value, dict) and "edges" in value:
            assert value["edges"], path.name


def test_times_past_2038_and_block_numbers_past_2_31_are_answered_not_a_broken_list(pg_factory):
    """Unix times are 64-bit (Timestamp): a GraphQL Int ends in January 2038, and an anchor's window (or an auction's
    end) is whatever a chain user wrote; one far-future value once made the whole list unanswerable. Block numbers
    likewise (BlockNumber): an Aptos chain's blocks are its ledger versions, past 2**31 on mainnet."""
    url = pg_factory.fresh()
    w = World(url)
    try:
        far = 2**40  # the year 36812
        w.number = 3_000_000_000  # an Aptos mainnet version
        w.anchor(1, h("root", 1), 4, 1000, 1999, 90)
        w.anchor(2, h("root", 2), 4, far - 10, far, 90)
        w.close()
        api = ApiClient(url)
        try:
            got = api.q("{ iotAnchors(first: 10) { nodes { anchorId windowStart windowEnd blockNumber } } "
                        "_meta { block { number } finalizedBlock } }")
            assert sorted((int(n["anchorId"]), n["windowEnd"]) for n in got["iotAnchors"]["nodes"]) == [(1, 1999), (2, far)]
            assert sorted(n["blockNumber"] for n in got["iotAnchors"]["nodes"]) == [3_000_000_001, 3_000_000_002]
            assert got["_meta"][0]["block"]["number"] == 3_000_000_002
            later = api.q("query($t: Timestamp) { iotAnchors(first: 10, where: {windowFrom: $t}) { nodes { anchorId } } }",
                          {"t": str(far - 1)})
            assert [int(n["anchorId"]) for n in later["iotAnchors"]["nodes"]] == [2]
            bad = api.post("query($t: Timestamp) { iotAnchors(where: {windowFrom: $t}) { nodes { anchorId } } }",
                           {"t": -1}).json()
            assert "Timestamp: expected unix seconds" in bad["errors"][0]["message"]
            # time travel to a version past 2**31: `version` (BlockNumber); `number` stays an Int, so clients that
            # declare `$n: Int!` for it keep working
            at = api.q("query($n: BlockNumber!) { iotAnchors(first: 10, block: {version: $n}) { nodes { anchorId } } }",
                       {"n": 3_000_000_001})
            assert [int(n["anchorId"]) for n in at["iotAnchors"]["nodes"]] == [1]
            inline = api.q("{ iotAnchors(first: 10, block: {version: 3000000002}) { nodes { anchorId } } }")
            assert len(inline["iotAnchors"]["nodes"]) == 2
            for doc, why in (("{ iotAnchors(block: {version: -1}) { nodes { anchorId } } }", "BlockNumber: expected a block number"),
                             ("{ iotAnchors(block: {number: 1, version: 1}) { nodes { anchorId } } }", "block: give one of number or version"),
                             ("{ iotAnchors(block: {}) { nodes { anchorId } } }", "block: give one of number or version"),
                             ("{ iotAnchors(block: {number: 3000000001}) { nodes { anchorId } } }", "Int cannot represent")):
                bad = api.post(doc).json()
                assert why in bad["errors"][0]["message"], (doc, bad)
        finally:
            api.close()
    finally:
        pg_factory.drop(url)
