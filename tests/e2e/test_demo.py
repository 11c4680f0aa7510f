"""The newcomer's path: `carbonledger demo` brings everything up and the three printed queries return the story."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from carbonledger.demo import TRIPS, Demo, co2_saved_g


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from tests.pg import server_url

    import os

    import psycopg

    name = f"cl_demo_{os.getpid()}"  # its own database on the server under test, dropped afterwards
    d = Demo(database_url=server_url(), api_port=0, oracle_port=0, state_dir=tmp_path_factory.mktemp("demo"),
             database_name=name)
    try:
        d.start()
        story = d.story()
        yield d, story
    finally:
        d.stop()
        with psycopg.connect(server_url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(d: Demo, query: str, variables: dict) -> dict:
    r = httpx.post(f"{d.api_url}/graphql", json={"query": query, "variables": variables}, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert "errors" not in body, body["errors"]
    return body["data"]


def test_co2_formula_is_the_seed_designs():
    assert co2_saved_g(10.0) == 1000  # (120 - 20) g/km x 10 km
    assert co2_saved_g(24.6) == 2460


def test_story_went_through_every_interface(demo):
    d, story = demo
    whats = " | ".join(s.what for s in story.steps)
    for needle in ("minted", "anchored", "listing", "Stripe", "certificate", "M-Pesa", "QR order"):
        assert needle in whats
    assert all(s.tx and s.tx.startswith("0x") and len(s.tx) == 66 for s in story.steps)


def test_printed_queries_return_the_story(demo):
    d, story = demo
    q = d.queries(story)
    minted = sum(co2_saved_g(km) for _, _, km in TRIPS)
    bought, retired = minted // 4, minted // 8

    pf = run(d, *q["portfolio"])["portfolio"]
    [h] = pf["holdings"]
    assert (int(h["tradable"]), int(h["retired"])) == (bought - retired, retired)
    assert pf["certificates"][0]["beneficiary"] == "Acme Logistics Ltd"

    cert = run(d, *q["certificate"])["certificate"]
    assert int(cert["amount"]) == retired
    kinds = [p["kind"] for p in cert["provenance"]]
    assert kinds[0].lower().startswith("mint") and kinds[-1].lower().startswith("retire"), kinds
    mint = next(p for p in cert["provenance"] if p["kind"] == "MINT")
    assert (mint["requestedBy"], mint["approvedBy"]) == ("gold-standard-desk", "gold-standard-review")  # four eyes
    sale = [p for p in cert["provenance"] if p.get("paymentRef") == story.ids["payment_intent"]]
    assert sale, "the Stripe payment reference must appear in the chain of custody"

    ms = run(d, *q["marketStats"])["marketStats"]
    assert ms["tradeCount"] == 1 and int(ms["volume"]) == bought
    assert int(ms["lastPrice"]) == 2 * 10**12


def test_graphiql_renders_the_portfolio_in_a_real_browser(demo):
    """Headless Chromium (Debian's chromium + chromium-driver, installed by .ci/run) opens GraphiQL and runs a query."""
    d, story = demo
    import json
    from urllib.parse import quote

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.browser import chromium

    query, variables = d.queries(story)["portfolio"]
    url = f"{d.api_url}/graphql?q={quote(query)}&variables={quote(json.dumps(variables))}"
    with chromium(Path(d.state_dir) / "chromium-profile") as browser:
        browser.get(url)
        wait = WebDriverWait(browser, 30)
        button = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, ".graphiql-execute-button")))
        button.click()
        owner = variables["owner"]
        wait.until(lambda b: owner in b.find_element(By.CSS_SELECTOR, ".graphiql-response").text)
        browser.save_screenshot(str(Path(d.state_dir) / "graphiql.png"))
        text = browser.find_element(By.CSS_SELECTOR, ".graphiql-response").text  # only the lines in view render
        minted = sum(co2_saved_g(km) for _, _, km in TRIPS)
        assert '"portfolio"' in text and f'"tradable": "{minted // 4 - minted // 8}"' in text, text


def test_the_asset_hub_leg_is_indexed_beside_the_devnet(demo):
    """The same credits on a real Substrate runtime (chopsticks): minted, sent, retired, a root anchored by remark,
    all answered by the same API for the buyer's SS58 account."""
    d, story = demo
    if d.chop is None:
        pytest.fail(f"the Asset Hub leg did not run: {d.substrate_skipped}")
    steps = [s for s in story.steps if s.what.startswith("Asset Hub")]
    assert len(steps) == 5
    minted = sum(co2_saved_g(km) for _, _, km in TRIPS)
    bought, retired = minted // 4, minted // 8
    pf = run(d, *d.queries(story)["portfolio on Asset Hub"])["portfolio"]
    assert [(h["chain"], int(h["tradable"]), int(h["retired"])) for h in pf["holdings"]] == \
        [("assethub", bought - retired, retired)]
    assert pf["certificates"][0]["beneficiary"] == "Acme Logistics Ltd"


def test_the_aptos_leg_is_indexed_beside_the_devnet(demo):
    """The same credits as Move fungible assets on the stand-in fullnode (labelled as such): minted, listed, settled
    by the oracle's key after a card payment, retired, a root stored, answered by the same API for the buyer."""
    d, story = demo
    assert d.aptos_node is not None, d.aptos_skipped
    steps = [s for s in story.steps if s.what.startswith("Aptos")]
    assert len(steps) == 6 and "stand-in" in steps[0].what
    minted = sum(co2_saved_g(km) for _, _, km in TRIPS)
    bought, retired = minted // 4, minted // 8
    pf = run(d, *d.queries(story)["portfolio on Aptos (stand-in)"])["portfolio"]
    assert [(h["chain"], int(h["tradable"]), int(h["retired"])) for h in pf["holdings"]] == \
        [("aptos", bought - retired, retired)]
    assert pf["certificates"][0]["beneficiary"] == "Acme Logistics Ltd"
