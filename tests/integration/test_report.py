"""Offset reports on indexed data: retirements spread over months on anvil, indexed by the real indexer, then
`carbonledger report retirements` as CSV, JSON and PDF (its text read back) and the API's `retirementReport`."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from web3 import Web3

from indexer.runner import run_once
from tests.integration.scenario import deploy, index_env, settings_for

pytestmark = pytest.mark.anvil
ROOT = Path(__file__).resolve().parents[2]
MONTH = 31 * 86400
T0 = 1_798_761_600  # 2027-01-01T00:00:00Z (anvil refuses a timestamp below its last block)


@pytest.fixture(scope="module")
def indexed(pg_factory):
    from core.anvil import Anvil

    with Anvil() as anvil:
        w3 = Web3(Web3.HTTPProvider(anvil.url))
        dep = deploy(w3)
        cc = dep.contract(w3, "CarbonCredit")
        admin, acme, other = w3.eth.accounts[0], w3.eth.accounts[5], w3.eth.accounts[6]

        def send(fn, sender):
            w3.eth.wait_for_transaction_receipt(fn.transact({"from": sender}), timeout=120)

        anvil.rpc("evm_setNextBlockTimestamp", [T0])
        for project, vintage in (("PRJ-FOREST", 2021), ("PRJ-COOKSTOVE", 2023)):
            send(cc.functions.createBatch(project, vintage, "VM0047", "verra", f"VCS-{project}", b"\x01" * 32), admin)
            batch = cc.functions.batchCount().call()
            send(cc.functions.mint(acme, batch, 1000, Web3.keccak(text=f"{project} acme")), admin)
            send(cc.functions.mint(other, batch, 1000, Web3.keccak(text=f"{project} other")), admin)
        # Acme retires in January, February (twice) and April; another beneficiary retires in between.
        plan = [(0, 1, 100, "Acme Ltd"), (1, 2, 40, "Acme Ltd"), (1, 1, 5, "Acme Ltd"), (2, 2, 7, "Someone else"),
                (3, 1, 60, "Acme Ltd")]
        for i, (month, batch, amount, who) in enumerate(plan):
            anvil.rpc("evm_setNextBlockTimestamp", [T0 + month * MONTH + 3600 * (i + 1)])
            send(cc.functions.retire(batch, amount, who, "2026 offsets"), acme if who == "Acme Ltd" else other)
        db_url = pg_factory.fresh()
        settings = settings_for(anvil.url, dep, db_url, finality_depth=0)
        assert run_once(settings, db_url=db_url) == 0
        try:
            yield settings, dep, acme
        finally:
            pg_factory.drop(db_url)


def _report(settings, *args):
    env = index_env(settings)
    out = subprocess.run([sys.executable, "-m", "carbonledger.cli", "report", "retirements", *args], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=300)
    os.unlink(env["CARBONLEDGER_CONFIG"])
    return out


def test_csv_lists_the_beneficiary_s_certificates_in_the_period(indexed):
    settings, dep, acme = indexed
    out = _report(settings, "--beneficiary", "Acme Ltd", "--from", "2027-01-01", "--to", "2027-04-01")
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert [(r["project_id"], r["vintage"], int(r["amount_tco2e"])) for r in rows] == [
        ("PRJ-FOREST", "2021", 100), ("PRJ-COOKSTOVE", "2023", 40), ("PRJ-FOREST", "2021", 5)]
    assert all(r["beneficiary"] == "Acme Ltd" and r["tx_hash"].startswith("0x") and r["time"].startswith("2027-0")
               for r in rows)


def test_json_totals_per_project_vintage_and_month(indexed):
    settings, dep, acme = indexed
    out = _report(settings, "--holder", acme, "--format", "json")
    assert out.returncode == 0, out.stderr
    rep = json.loads(out.stdout)
    assert rep["unit"] == "tCO2e" and rep["totals"]["amount"] == 205 and rep["totals"]["certificates"] == 4
    assert rep["totals"]["by_project"] == [{"project_id": "PRJ-COOKSTOVE", "amount": 40},
                                           {"project_id": "PRJ-FOREST", "amount": 165}]
    assert rep["totals"]["by_vintage"] == [{"vintage": 2021, "amount": 165}, {"vintage": 2023, "amount": 40}]
    assert [(m["month"], m["project_id"], m["amount"]) for m in rep["by_month"]] == [
        ("2027-01", "PRJ-FOREST", 100), ("2027-02", "PRJ-COOKSTOVE", 40), ("2027-02", "PRJ-FOREST", 5),
        ("2027-04", "PRJ-FOREST", 60)]


def test_pdf_renders_with_totals_chart_and_verify_commands(indexed, tmp_path):
    from pypdf import PdfReader

    settings, dep, acme = indexed
    pdf = tmp_path / "acme.pdf"
    out = _report(settings, "--beneficiary", "Acme Ltd", "--format", "pdf", "--out", str(pdf))
    assert out.returncode == 0, out.stderr
    assert "4 certificate(s), 205 tCO2e" in out.stdout
    text = " ".join(page.extract_text() for page in PdfReader(pdf).pages)
    flat = " ".join(text.split())
    assert "Carbon offset retirements" in flat and "205 tCO2e" in flat
    assert "tCO2e retired per month, by project" in flat and "2027-02" in flat and "PRJ-COOKSTOVE" in flat
    assert "carbonledger verify certificate 1 --rpc RPC_URL --contract CarbonCredit=" in flat.replace("- ", "-")


def test_bad_requests_are_one_line(indexed):
    settings, dep, acme = indexed
    both = _report(settings, "--beneficiary", "A", "--holder", acme)
    assert both.returncode == 2 and "not allowed with" in both.stderr
    empty = _report(settings, "--beneficiary", "A", "--from", "2027-05-01", "--to", "2027-01-01")
    assert empty.returncode == 1 and empty.stderr.count("\n") == 1 and "period is empty" in empty.stderr
    pdf = _report(settings, "--beneficiary", "A", "--format", "pdf")
    assert pdf.returncode == 1 and "--out" in pdf.stderr


def test_the_api_gives_the_same_report(indexed):
    from gqlapi.testing import ApiClient

    settings, dep, acme = indexed
    api = ApiClient(settings.database.url)
    try:
        q = """query($h: String, $b: String, $from: Timestamp, $to: Timestamp, $first: Int) {
          retirementReport(holder: $h, beneficiary: $b, from: $from, to: $to, first: $first) {
            certificateCount totalAmount truncated certificates { id amount beneficiary verification { command } }
            byProject { projectId amount } byVintage { vintage amount } byMonth { month projectId amount } } }"""
        rep = api.q(q, {"h": acme})["retirementReport"]
        assert rep["certificateCount"] == 4 and rep["totalAmount"] == "205" and not rep["truncated"]
        assert rep["byProject"] == [{"projectId": "PRJ-COOKSTOVE", "amount": "40"}, {"projectId": "PRJ-FOREST", "amount": "165"}]
        assert [v["vintage"] for v in rep["byVintage"]] == [2021, 2023]
        cut = api.q(q, {"b": "Acme Ltd", "from": T0 + MONTH, "first": 1})["retirementReport"]
        assert cut["truncated"] and len(cut["certificates"]) == 1 and cut["totalAmount"] == "105"
        bad = api.post(q, {"h": acme, "b": "Acme Ltd"}).json()
        assert "exactly one of beneficiary or holder" in bad["errors"][0]["message"]
        later = api.q(q, {"h": acme, "from": 2**32, "to": "9999999999"})["retirementReport"]  # past 2038, past 2106
        assert later["certificateCount"] == 0 and later["certificates"] == []
        huge = api.post(q, {"h": acme, "to": str(10**30)}).json()
        assert "Timestamp: expected unix seconds" in huge["errors"][0]["message"]
    finally:
        api.close()
