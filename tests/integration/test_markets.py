"""Existing carbon markets on anvil: stand-ins emitting the real Toucan, ICR, Klima and Carbonmark events
(contracts/evm/test-markets), configured as `chains.dev.markets`, indexed by the real indexer beside carbonledger's
own protocol; one wallet's portfolio holds our credits, a TCO2 and an ICR vintage, with certificates for each
retirement (registry serials consumed first in, first out), Klima's annotation and Carbonmark's listings and
trades. A few tens of transactions: seconds, not minutes."""

from __future__ import annotations

import json

import pytest
from web3 import Web3

pytestmark = pytest.mark.anvil
E18 = 10**18
SERIAL = "VCS-VCU-263-VER-KE-14-1529-01012020-31122020-1001-1100"
TCO2_SERIAL = "VCS-VCU-263-VER-KE-14-1529-01012020-31122020-501-510"


def _send(w3, fn, sender):
    receipt = w3.eth.wait_for_transaction_receipt(fn.transact({"from": sender}), timeout=120)
    assert receipt["status"] == 1
    return receipt


def _deploy(w3, name, *args):
    from chains.evm.deploy import deploy_contract
    from chains.evm.artifacts import abi

    d = deploy_contract(w3, w3.eth.accounts[0], name, *args)
    return w3.eth.contract(address=d.address, abi=abi(name)), d.block_number


@pytest.fixture(scope="module")
def world(pg_factory):
    from core.anvil import Anvil
    from core.config import MarketSettings
    from gqlapi.testing import ApiClient
    from indexer.runner import run_once
    from tests.integration.scenario import deploy, settings_for

    with Anvil() as node:
        w3 = Web3(Web3.HTTPProvider(node.url))
        admin, w, x = w3.eth.accounts[0], w3.eth.accounts[1], w3.eth.accounts[2]
        dep = deploy(w3)
        cc = dep.contract(w3, "CarbonCredit")
        tco2, start = _deploy(w3, "StandInTCO2", "TCO2-VCS-1529-2020", "TCO2-VCS-1529-2020")
        certs, _ = _deploy(w3, "StandInRetirementCertificates")
        icr, _ = _deploy(w3, "StandInICRProject")
        klima, _ = _deploy(w3, "StandInKlimaInfinity")
        cmark, _ = _deploy(w3, "StandInCarbonmark")
        unfollowed = w3.eth.accounts[9]  # an ICR-like token whose contract is not followed (Klima alone reports it)

        # carbonledger's own credits, with a Verra-style serial range
        _send(w3, cc.functions.createBatch("VCS-1529", 2020, "VM0042", "verra", SERIAL, b"\x01" * 32), admin)
        batch = cc.functions.batchCount().call()
        _send(w3, cc.functions.mint(w, batch, 100, b"\x02" * 32), admin)
        _send(w3, cc.functions.retire(batch, 30, "Acme", "first"), w)
        _send(w3, cc.functions.retire(batch, 20, "Acme", "second"), w)
        # a TCO2: mint, transfer, both Retired versions, a certificate NFT, a retirement through Klima
        _send(w3, tco2.functions.mint(w, 10 * E18), admin)
        _send(w3, tco2.functions.transfer(x, 2 * E18), w)
        _send(w3, tco2.functions.retire(E18), w)
        _send(w3, tco2.functions.retireLegacy(E18 // 2), w)
        _send(w3, tco2.functions.retireAndMintCertificate(certs.address, E18), w)
        _send(w3, tco2.functions.approve(klima.address, E18), w)
        _send(w3, klima.functions.toucanRetireExactTCO2(tco2.address, E18, x, "Acme Ltd", "2025 offset"), w)
        _send(w3, klima.functions.emitRetired1155((3, unfollowed, 4, 3, x, "Beta", "via klima")), w)
        # an ICR project: single and batch mints, a transfer, a retirement
        _send(w3, icr.functions.mint(w, 7, 100), admin)
        _send(w3, icr.functions.mintBatch(x, [1, 2], [5, 6]), admin)
        _send(w3, icr.functions.safeTransferFrom(w, x, 7, 10, b""), w)
        _send(w3, icr.functions.retire(7, 5, b"\xaa"), w)
        # Carbonmark: a TCO2 listing updated and partly filled; an ICR listing cancelled
        _send(w3, tco2.functions.approve(cmark.address, 10 * E18), w)
        r = _send(w3, cmark.functions.createListing(tco2.address, 0, False, 3 * E18, 5 * E18, 0, 2**40), w)
        tco2_listing = cmark.events.ListingCreated().process_receipt(r)[0]["args"]["id"]
        _send(w3, cmark.functions.updateListing(tco2_listing, 2 * E18, 4 * E18, 0, 2**40), w)
        _send(w3, cmark.functions.fillListing(tco2_listing, E18 // 4), x)
        _send(w3, icr.functions.setApprovalForAll(cmark.address, True), w)
        r = _send(w3, cmark.functions.createListing(icr.address, 7, True, 20, 7 * E18, 0, 2**40), w)
        icr_listing = cmark.events.ListingCreated().process_receipt(r)[0]["args"]["id"]
        _send(w3, cmark.functions.fillListing(icr_listing, 4), x)
        _send(w3, cmark.functions.cancelListing(icr_listing), w)

        markets = [MarketSettings(protocol=p, address=c.address, start_block=start) for p, c in (
            ("toucan_certificates", certs), ("icr_project", icr), ("klima_infinity", klima), ("carbonmark", cmark))]
        # the TCO2's registry details, as its Toucan batch NFT records them: one serial per tonne (10**18 units)
        markets.append(MarketSettings(protocol="toucan_tco2", address=tco2.address, start_block=start, batches={0: {
            "project_id": "VCS-1529", "vintage": 2020, "registry": "Verra", "serial_number": TCO2_SERIAL,
            "decimals": 18}}))
        url = pg_factory.fresh()
        settings = settings_for(node.url, dep, url, finality_depth=2, markets=markets)
        assert run_once(settings, db_url=url) == 0
        api = ApiClient(url)
        try:
            yield {"w3": w3, "api": api, "url": url, "w": w, "x": x, "batch": batch, "tco2": tco2, "icr": icr,
                   "klima": klima, "certs": certs, "cmark": cmark, "cc": cc, "tco2_listing": tco2_listing, "icr_listing": icr_listing,
                   "unfollowed": unfollowed, "node": node, "settings": settings}
        finally:
            api.close()
            pg_factory.drop(url)


PORTFOLIO = """query($o: String!) { portfolio(owner: $o, chain: "dev") {
  holdings { batchId tradable listed retired batch { protocol tokenAddress tokenId projectId registry serialNumber
             serialStart serialEnd totalMinted totalRetired } }
  certificates { id holder amount beneficiary reason serialRange marketRef batch { protocol tokenAddress } } } }"""


def _big(v):
    return int(v) if v is not None else None


def test_one_portfolio_holds_our_credits_tco2_and_icr(world):
    w3, api, w = world["w3"], world["api"], world["w"]
    tco2, icr, cc = world["tco2"], world["icr"], world["cc"]
    p = api.q(PORTFOLIO, {"o": w})["portfolio"]
    by_protocol = {h["batch"]["protocol"]: h for h in p["holdings"]}
    assert set(by_protocol) == {"carbonledger", "toucan_tco2", "icr_project", "klima_infinity"}

    ours = by_protocol["carbonledger"]
    assert (int(ours["tradable"]), int(ours["retired"])) == (cc.functions.balanceOf(w, world["batch"]).call(), 50)
    assert (_big(ours["batch"]["serialStart"]), _big(ours["batch"]["serialEnd"])) == (1001, 1100)

    t = by_protocol["toucan_tco2"]
    assert int(t["tradable"]) == tco2.functions.balanceOf(w).call() == 10 * E18 - 2 * E18 - E18 - E18 // 2 - E18 - E18 - E18 // 4
    assert int(t["retired"]) == E18 + E18 // 2 + E18  # the Klima retirement is Klima's (it held and burned the tokens)
    assert int(t["batchId"]) == int(tco2.address, 16) << 96
    assert (t["batch"]["tokenAddress"], _big(t["batch"]["tokenId"])) == (tco2.address, 0)
    assert int(t["batch"]["totalMinted"]) == 10 * E18 and int(t["batch"]["totalRetired"]) == 3 * E18 + E18 // 2

    i = by_protocol["icr_project"]
    assert int(i["tradable"]) == icr.functions.balanceOf(w, 7).call() == 100 - 10 - 5 - 4
    assert int(i["retired"]) == 5
    assert (i["batch"]["tokenAddress"], _big(i["batch"]["tokenId"])) == (icr.address, 7)

    certs = p["certificates"]
    ours_c = [c for c in certs if c["batch"]["protocol"] == "carbonledger"]
    # first in, first out within the batch: 30 then 20 units of serials 1001..1100
    assert [c["serialRange"] for c in ours_c] == [SERIAL.replace("1001-1100", "1001-1030"),
                                                  SERIAL.replace("1001-1100", "1031-1050")]
    assert all(c["marketRef"] is None for c in ours_c)
    tco2_c = [c for c in certs if c["batch"]["protocol"] == "toucan_tco2"]
    assert [int(c["amount"]) for c in tco2_c] == [E18, E18 // 2, E18]
    # 1, 0.5 and 1 tonnes after none: serials 501, 502 (the half tonne), then 502 again (its other half) and 503
    assert [c["serialRange"] for c in tco2_c] == [TCO2_SERIAL.replace("501-510", r) for r in ("501-501", "502-502",
                                                                                           "502-503")]
    assert (t["batch"]["projectId"], t["batch"]["registry"], _big(t["batch"]["serialStart"])) == ("VCS-1529", "Verra", 501)
    assert [c["marketRef"] for c in tco2_c] == [
        "toucan eventId 1", None, f"toucan eventId 2; RetirementCertificates {world['certs'].address.lower()}#1"]
    icr_c = [c for c in certs if c["batch"]["protocol"] == "icr_project"]
    assert [(int(c["amount"]), c["marketRef"]) for c in icr_c] == [(5, "ICR retirement NFT 1")]
    # chain-unique certificate ids for external retirements: block << 32 | log index
    for c in tco2_c + icr_c:
        assert int(c["id"]) >> 32 > 0


def test_klima_annotates_the_tco2_retirement_or_reports_its_own(world):
    api, klima = world["api"], world["klima"]
    q = """query($b: String) { certificates(where: {chain: "dev", beneficiary: $b}, orderBy: OLDEST) {
      nodes { holder amount beneficiary reason marketRef batchId batch { protocol } } } }"""
    acme = api.q(q, {"b": "Acme Ltd"})["certificates"]["nodes"]
    # one certificate, not two: Klima's event annotated the TCO2's own Retired of the same transaction
    assert len(acme) == 1
    c = acme[0]
    assert (c["holder"], int(c["amount"]), c["reason"], c["batch"]["protocol"]) == (klima.address, E18, "2025 offset", "toucan_tco2")
    assert c["marketRef"] == f"toucan eventId 3; klima retiredBy {world['w'].lower()} for {world['x'].lower()}"
    beta = api.q(q, {"b": "Beta"})["certificates"]["nodes"]
    assert len(beta) == 1 and int(beta[0]["amount"]) == 3 and beta[0]["holder"] == world["w"]
    assert int(beta[0]["batchId"]) == int(world["unfollowed"], 16) << 96 | 4


def test_carbonmark_listings_and_trades_land_in_the_market_tables(world):
    api, tco2, icr = world["api"], world["tco2"], world["icr"]
    q = """query($id: BigInt) { listings(where: {chain: "dev", listingId: $id}) { nodes { seller batchId pricePerUnit
      amountListed amountRemaining amountSold status } }
      trades(where: {chain: "dev", listingId: $id}) { nodes { buyer seller amount pricePerUnit batchId } } }"""
    d = api.q(q, {"id": str(int.from_bytes(world["tco2_listing"], "big"))})
    assert d["listings"]["nodes"] == [{
        "seller": world["w"], "batchId": str(int(tco2.address, 16) << 96), "pricePerUnit": str(4 * E18),
        "amountListed": str(2 * E18), "amountRemaining": str(2 * E18 - E18 // 4), "amountSold": str(E18 // 4),
        "status": "active"}]
    assert d["trades"]["nodes"] == [{"buyer": world["x"], "seller": world["w"], "amount": str(E18 // 4),
                                     "pricePerUnit": str(4 * E18), "batchId": str(int(tco2.address, 16) << 96)}]
    d = api.q(q, {"id": str(int.from_bytes(world["icr_listing"], "big"))})
    assert d["listings"]["nodes"][0]["status"] == "cancelled"
    assert d["trades"]["nodes"][0]["batchId"] == str(int(icr.address, 16) << 96 | 7)
    # the fill's token movement is a sale in the ledger, the batch's provenance shows it
    import psycopg

    with psycopg.connect(world["url"]) as conn:
        kinds = conn.execute("SELECT kind, count(*) FROM ledger_entry WHERE chain = 'dev' AND batch_id = %s GROUP BY kind",
                             (int(tco2.address, 16) << 96,)).fetchall()
        errors = conn.execute("SELECT message FROM indexing_error WHERE chain = 'dev'").fetchall()
    assert dict(kinds) == {"mint": 1, "transfer": 2, "burn": 4, "sale": 1}
    assert errors == []


def test_every_stand_in_log_decodes_to_the_signature_in_the_topic_index(world, fixtures_dir):
    """Decoding agrees with the topic index: each stand-in log the indexer followed has a topic0 the index lists
    for that market's ABI, with as many indexed fields."""
    w3 = world["w3"]
    index = json.loads((fixtures_dir / "carbon-abis" / "event_topics_index.json").read_text())["events"]
    by_topic = {}
    for e in index:
        by_topic.setdefault(e["topic0"], []).append(e)
    seen = set()
    for name in ("tco2", "icr", "klima", "certs", "cmark"):
        address = world[name].address
        for log in w3.eth.get_logs({"address": address, "fromBlock": 0, "toBlock": "latest"}):
            t0 = "0x" + bytes(log["topics"][0]).hex()
            entries = by_topic.get(t0)
            assert entries, f"{name}: topic0 {t0} not in the index"
            assert any(len(e["indexed"]) == len(log["topics"]) - 1 for e in entries), (name, entries[0]["signature"])
            seen.add(entries[0]["signature"])
    assert {"Retired(address,uint256)", "Retired(address,uint256,uint256)", "CertificateMinted(uint256)",
            "RetiredVintage(address,uint256,uint256,uint256,bytes)", "TransferBatch(address,address,address,uint256[],uint256[])",
            "CarbonRetired(uint8,address,string,address,string,string,address,address,uint256)",
            "CarbonRetired(uint8,address,string,address,string,string,address,address,uint256,uint256)",
            "ListingCreated(bytes32,address,address,uint256,uint256,uint256,uint256,uint256)",
            "ListingFilled(bytes32,address,uint256,uint256)", "ListingCancelled(bytes32)",
            "ListingUpdated(bytes32,uint256,uint256,uint256,uint256,uint256,uint256,uint256,uint256)"} <= seen


def test_an_external_certificate_has_its_provenance(world):
    api = world["api"]
    q = """query($h: String) { certificates(where: {chain: "dev", holder: $h}, orderBy: OLDEST) { nodes { id marketRef
      batch { protocol } provenance { kind amount fromAddress toAddress } } } }"""
    nodes = api.q(q, {"h": world["w"]})["certificates"]["nodes"]
    first_tco2 = next(n for n in nodes if n["batch"]["protocol"] == "toucan_tco2")
    assert [(p["kind"], int(p["amount"])) for p in first_tco2["provenance"]] == [("MINT", 10 * E18), ("RETIREMENT", E18)]
    icr = next(n for n in nodes if n["batch"]["protocol"] == "icr_project")
    assert [(p["kind"], int(p["amount"])) for p in icr["provenance"]] == [("MINT", 100), ("RETIREMENT", 5)]


def test_an_external_certificate_does_not_claim_a_carbonledger_verifier(world):
    q = """query($h: String) { certificates(where: {chain: "dev", holder: $h}, orderBy: OLDEST) { nodes {
      batch { protocol } verification { contract command txHash } } } }"""
    nodes = world["api"].q(q, {"h": world["w"]})["certificates"]["nodes"]
    ext = [n for n in nodes if n["batch"]["protocol"] != "carbonledger"]
    assert ext and all(n["verification"]["contract"] is None and n["verification"]["command"].startswith(
        "not a carbonledger certificate") and n["verification"]["txHash"] in n["verification"]["command"] for n in ext)
    ours = [n for n in nodes if n["batch"]["protocol"] == "carbonledger"]
    assert all(n["verification"]["command"].startswith("carbonledger verify certificate") for n in ours)


def test_a_reorged_out_market_retirement_is_undone(world):
    """Runs last (it changes the chain): a TCO2 retirement and an ICR transfer indexed at the head, then replaced by
    a longer branch without them: certificates and holdings are back to what they were."""
    from indexer.runner import run_once

    w3, node, api, w = world["w3"], world["node"], world["api"], world["w"]
    before = api.q(PORTFOLIO, {"o": w})
    snap = node.rpc("evm_snapshot")
    _send(w3, world["tco2"].functions.retire(E18 // 8), w)
    _send(w3, world["icr"].functions.safeTransferFrom(w, world["x"], 7, 1, b""), w)
    assert run_once(world["settings"], db_url=world["url"]) == 0
    during = api.q(PORTFOLIO, {"o": w})["portfolio"]
    assert len(during["certificates"]) == len(before["portfolio"]["certificates"]) + 1
    node.rpc("evm_revert", [snap])
    node.rpc("anvil_mine", [hex(3)])
    assert run_once(world["settings"], db_url=world["url"]) == 0
    assert api.q(PORTFOLIO, {"o": w}) == before
