"""Hostile values that Postgres would refuse at COPY (a NUL in a retirement's beneficiary, anyone can write one; an
auction ending at 2**64 - 1, beyond a BIGINT) are each their event's indexing error: the indexer goes on, the
rest of the block and the chain are indexed (before, one such event stopped the chain at its block for good)."""

from __future__ import annotations

import psycopg
import pytest
from web3 import Web3

from indexer.runner import run_once
from store.engine import libpq_url
from tests.integration.scenario import deploy, settings_for

pytestmark = pytest.mark.anvil


def test_values_postgres_would_refuse_are_indexing_errors_not_a_halt(anvil, db_url):
    w3 = Web3(Web3.HTTPProvider(anvil.url))
    dep = deploy(w3)
    cc, au = dep.contract(w3, "CarbonCredit"), dep.contract(w3, "Auction")
    admin, alice = w3.eth.accounts[0], w3.eth.accounts[1]

    def tx(call, sender):
        assert w3.eth.wait_for_transaction_receipt(call.transact({"from": sender}), timeout=120)["status"] == 1

    tx(cc.functions.createBatch("P", 2024, "M", "R", "S", b"\x01" * 32), admin)
    tx(cc.functions.mint(alice, 1, 100, b"\x02" * 32), admin)
    tx(cc.functions.retire(1, 1, "Acme\x00Ltd", "nul"), alice)
    tx(cc.functions.setApprovalForAll(au.address, True), alice)
    tx(au.functions.create(1, 5, 1, 1, 2**64 - 1), alice)
    tx(cc.functions.retire(1, 2, "Acme Ltd", "fine"), alice)
    settings = settings_for(anvil.url, dep, db_url, finality_depth=0)
    assert run_once(settings, db_url=db_url) == 0
    with psycopg.connect(libpq_url(db_url)) as conn:
        errors = [r[0] for r in conn.execute("SELECT message FROM indexing_error ORDER BY block_number, log_index")]
        certs = conn.execute("SELECT certificate_id, beneficiary FROM retirement ORDER BY certificate_id").fetchall()
        head = conn.execute("SELECT block_number FROM indexer_cursor").fetchone()[0]
    assert any("retirement.beneficiary: text with a NUL character" in e for e in errors), errors
    assert any("auction.end_time" in e and "out of range for int8" in e for e in errors), errors
    assert all("\x00" not in e for e in errors)
    assert [(int(c), b) for c, b in certs] == [(2, "Acme Ltd")]  # the next retirement is there
    assert head == w3.eth.block_number
