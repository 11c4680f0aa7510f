"""An off-chain payment for an ink! escrow order on a Substrate chain: the sender's pre-check finds a payment the
indexer already holds (the order funded with this reference, in any version since) and writes nothing for it;
any other is dry-run. Postgres is real; the chain side is the writer's own dry run, answered here (no contracts
runtime runs on this machine: tests/unit/test_substrate_ink.py checks the call's bytes on recorded runtimes)."""

from __future__ import annotations

from types import SimpleNamespace

import psycopg
from psycopg_pool import ConnectionPool

from chains.base import ChainError, TxRequest
from oracle.substrate_sender import SubstrateSender
from store.engine import libpq_url

ORDER = ("0x" + "b1" * 32, "0x" + "5e" * 32, 5 * 10**12, "0x" + "33" * 32)


def test_a_payment_the_indexer_holds_is_done_and_others_are_dry_run(db_url):
    url = libpq_url(db_url)
    with psycopg.connect(url) as conn:
        rows = [  # order 7: funded off-chain with QKR7 at block 41, delivered since; order 8: only created
            (7, "created", False, None, 40, 41), (7, "funded", True, "QKR7ABC123", 41, 45),
            (7, "delivered", True, "QKR7ABC123", 45, None), (8, "created", False, None, 40, None),
            (9, "funded", True, "QKR7ABC123", 42, None),  # another chain's order with the same ref: not ours
        ]
        for i, (order, status, offchain, ref, since, until) in enumerate(rows):
            conn.execute("INSERT INTO escrow_order (chain, order_id, buyer, seller, amount, metadata_hash, status,"
                         " funded_offchain, payment_ref, created_block, created_tx, valid_from, valid_to)"
                         " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 40, %s, %s, %s)",
                         ("other" if order == 9 else "ah", order, *ORDER, status, offchain, ref, "0x" + "aa" * 32,
                          since, until))
    asked = []

    def precheck(r: TxRequest) -> str:
        asked.append(r.args)
        if int(r.args[0]) >= 2**128:  # what the real writer raises for a request it cannot build
            raise ChainError("Escrow.recordOffchainPayment: ink! message record_offchain_payment: out of range")
        return "Contracts.ContractReverted: reverted"

    writer = SimpleNamespace(precheck=precheck)
    pool = ConnectionPool(url, min_size=1, max_size=2, open=True)
    try:
        sender = SimpleNamespace(pool=pool, chain="ah", writer=writer)
        reqs = [TxRequest("ah", "Escrow", "recordOffchainPayment", ("7", "QKR7ABC123")),  # done (any version)
                TxRequest("ah", "Escrow", "recordOffchainPayment", ("8", "QKR8")),  # not yet: dry-run
                TxRequest("ah", "Escrow", "recordOffchainPayment", ("7", "OTHER")),  # another ref: not this one
                TxRequest("ah", "Escrow", "recordOffchainPayment", ("9", "QKR7ABC123")),  # other chain's row
                TxRequest("ah", "Escrow", "recordOffchainPayment", (str(2**128), "QKR9"))]  # refused, not raised
        sender._dry_run = lambda r: SubstrateSender._dry_run(sender, r)
        done, checks = SubstrateSender._prechecks(sender, reqs)
    finally:
        pool.close()
    assert done == [True, False, False, False, False]
    assert checks[0] == (0, None)
    assert [c[1] for c in checks[1:4]] == ["Contracts.ContractReverted: reverted"] * 3
    assert "out of range" in checks[4][1]
    assert asked == [("8", "QKR8"), ("7", "OTHER"), ("9", "QKR7ABC123"), (str(2**128), "QKR9")]
