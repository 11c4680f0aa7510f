"""The Aptos family end to end on the stand-in fullnode: a random scenario written with the writer (aptos-sdk
signed, gas from simulation) and indexed by the real indexer into Postgres, compared with a ground truth taken from
the stand-in's ledger (its events and the package state it modelled); a malformed Move value in a committed
transaction recorded as an indexing error; the GraphQL tables answer as for the other families (chain column)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import psycopg
import pytest

from chains.aptos.values import address
from chains.base import TxState
from core.config import Settings
from indexer.runner import run_once
from store.engine import libpq_url
from tests import seeds
from tests.unit.aptos_fixtures import aptos, send  # noqa: F401 - fixture


def aptos_settings(w: Any, db_url: str, chain: str = "apt") -> Settings:
    return Settings(database={"url": db_url}, chains={chain: {
        "family": "aptos", "rpc_url": w.url, "aptos_package": w.package, "chain_id": 4, "poll_interval_s": 0.05}})


def run_scenario(w: Any, actions: int, seed: int) -> dict[str, int]:
    """Random credits activity by three holders; some actions fail on chain (Move aborts) on purpose."""
    rng = seeds.rng(seed)
    users = {"alice": w.alice, "bob": w.bob}
    who = lambda: rng.choice(list(users))  # noqa: E731
    outcome: dict[str, int] = defaultdict(int)
    admin, oracle = w.writer["admin"], w.writer["oracle"]
    for b in range(2):
        assert send(admin, "carbon_credit", "create_batch", f"VCS-{b}", 2020 + b, "VM0038", "Verra", f"S{b}",
                    "0x" + f"{b:02x}" * 32).state is TxState.MINED
    refs, roots = [], []
    for i in range(actions):
        kind = rng.choice(["mint", "mint", "transfer", "retire", "list", "cancel", "settle", "anchor"])
        u = who()
        batch = rng.randint(1, 2)
        if kind == "mint":
            st = send(admin, "CarbonCredit", "mint", str(users[u].address()), batch, rng.randint(1, 50),
                      "0x" + rng.randbytes(32).hex())
        elif kind == "transfer":
            other = "bob" if u == "alice" else "alice"
            st = send(w.writer[u], "carbon_credit", "transfer", str(users[other].address()), batch, rng.randint(1, 20))
        elif kind == "retire":
            st = send(w.writer[u], "CarbonCredit", "retire", batch, rng.randint(1, 15), f"ben-{i}", f"reason {i}")
        elif kind == "list":
            st = send(w.writer[u], "Marketplace", "list", batch, rng.randint(1, 10), rng.randint(1, 9))
        elif kind == "cancel":
            st = send(w.writer[u], "Marketplace", "cancel", rng.randint(1, 4))
        elif kind == "settle":
            ref = rng.choice(refs) if refs and rng.random() < 0.3 else f"pi_{i}"  # a repeated reference aborts
            refs.append(ref)
            st = send(oracle, "Marketplace", "settleOffchain", str(rng.randint(1, 4)), str(users[u].address()),
                      str(rng.randint(1, 3)), ref)
        else:
            root = rng.choice(roots) if roots and rng.random() < 0.3 else "0x" + rng.randbytes(32).hex()
            roots.append(root)
            st = send(oracle, "IoTAnchor", "anchor", root, 8, i, i + 60, 95)
        outcome[st.state.value] += 1
        if st.state is TxState.REVERTED:
            assert st.error.startswith("Move abort in "), st.error
    return outcome


def certify(w: Any) -> None:
    """A certificate and an anchor whatever the random actions did (tests assert on both; with some seeds a few dozen
    actions retire or anchor nothing): alice is minted 10 of batch 1 and retires 5; the oracle anchors a root."""
    for signer, *call in [(w.writer["admin"], "CarbonCredit", "mint", str(w.alice.address()), 1, 10, "0x" + "ab" * 32),
                          (w.writer["alice"], "CarbonCredit", "retire", 1, 5, "ben", "certified"),
                          (w.writer["oracle"], "IoTAnchor", "anchor", "0x" + "cd" * 32, 8, 0, 60, 95)]:
        st = send(signer, *call)
        assert st.state is TxState.MINED, st.error


BAD_TX = "0x" + "5a" * 32  # the transaction the test corrupts


def ground_truth(w: Any) -> dict[str, Any]:
    """From the stand-in's ledger: the events of committed user transactions (but the corrupted one), and the
    balances it kept."""
    retirements, anchors, minted = [], [], defaultdict(int)
    retired: dict[tuple[str, int], int] = defaultdict(int)
    for tx in w.node.ledger:
        if tx["type"] != "user_transaction" or not tx["success"] or tx["hash"] == BAD_TX:
            continue
        for ev in tx["events"]:
            name, d = ev["type"].rsplit("::", 1)[1], ev["data"]
            if name == "Retired":
                retirements.append((address(d["holder"]), int(d["batch_id"]), int(d["amount"]), d["beneficiary"],
                                    d["reason"]))
                retired[(address(d["holder"]), int(d["batch_id"]))] += int(d["amount"])
            elif name == "Anchored":
                anchors.append(d["root"])
            elif name == "Minted":
                minted[int(d["batch_id"])] += int(d["amount"])
    holdings = {}
    for (owner, batch), amount in w.node.state.balances.items():
        if owner.startswith("0x") and owner != w.node.escrow and (amount or retired.get((owner, batch))):
            holdings[(owner, batch)] = (amount, retired.get((owner, batch), 0))
    for key, r in retired.items():
        holdings.setdefault(key, (w.node.state.balances.get(key, 0), r))
    return {"holdings": holdings, "retirements": sorted(retirements), "anchors": sorted(anchors), "minted": dict(minted)}


def indexed(db_url: str, chain: str) -> dict[str, Any]:
    with psycopg.connect(libpq_url(db_url)) as conn:
        holdings = {(o, int(b)): (int(t), int(r)) for o, b, t, r in conn.execute(
            "SELECT owner, batch_id, tradable, retired FROM holding WHERE chain = %s AND valid_to IS NULL "
            "AND (tradable <> 0 OR retired <> 0)", (chain,))}
        retirements = sorted((h, int(b), int(a), ben, rea) for h, b, a, ben, rea in conn.execute(
            "SELECT holder, batch_id, amount, beneficiary, reason FROM retirement WHERE chain = %s", (chain,)))
        anchors = sorted(r for (r,) in conn.execute("SELECT root FROM iot_anchor WHERE chain = %s", (chain,)))
        minted = {int(b): int(m) for b, m in conn.execute(
            "SELECT batch_id, total_minted FROM credit_batch WHERE chain = %s AND valid_to IS NULL", (chain,))}
    return {"holdings": holdings, "retirements": retirements, "anchors": anchors, "minted": minted}


def test_random_scenario_indexed_equals_the_ledger_and_bad_values_are_recorded(aptos, db_url):
    w = aptos
    outcome = run_scenario(w, actions=30, seed=11)
    assert outcome["mined"] >= 15 and outcome["reverted"] >= 1, outcome
    certify(w)
    # A committed transaction whose event carries a malformed Move value (a float amount): recorded, not indexed.
    with w.node.lock:
        pkg = "0x" + w.package[2:].lstrip("0")
        w.node._block([{"hash": BAD_TX, "sender": pkg, "success": True, "vm_status": "Executed successfully",
                        "type": "user_transaction", "changes": [], "events": [{
                            "guid": {"creation_number": "0", "account_address": "0x0"}, "sequence_number": "0",
                            "type": f"{pkg}::carbon_credit::Minted",
                            "data": {"batch_id": "1", "to": pkg, "amount": 1.5, "verification_hash": "0x00"}}]}])
    tip = w.node.ledger_version
    settings = aptos_settings(w, db_url)
    assert run_once(settings, db_url=db_url, timeout_s=120) == 0
    truth, got = ground_truth(w), indexed(db_url, "apt")
    assert truth["retirements"] and truth["anchors"] and len(truth["holdings"]) >= 2  # the scenario did something
    assert got == truth
    with psycopg.connect(libpq_url(db_url)) as conn:
        cursor = conn.execute("SELECT block_number FROM indexer_cursor WHERE chain = 'apt'").fetchone()[0]
        errors = conn.execute("SELECT block_number, log_index, contract, message FROM indexing_error").fetchall()
        sold = conn.execute("SELECT count(*) FROM trade WHERE chain = 'apt' AND payment_ref IS NOT NULL").fetchone()[0]
    assert cursor == tip
    assert len(errors) == 1 and errors[0][:3] == (tip - 1, 0, "CarbonCredit") and "amount" in errors[0][3], errors
    assert sold == sum(1 for tx in w.node.ledger if tx["type"] == "user_transaction" and tx["success"]
                       and any(e["type"].endswith("::Sold") for e in tx["events"]))
    _same_answers_from_the_api(db_url, w, truth)
    # more activity after a restart continues from the cursor (a version), nothing indexed twice
    assert send(w.writer["admin"], "CarbonCredit", "mint", str(w.bob.address()), 2, 4, "0x" + "9f" * 32).state is TxState.MINED
    assert run_once(settings, db_url=db_url, timeout_s=120) == 0
    assert indexed(db_url, "apt") == ground_truth(w)


def _same_answers_from_the_api(db_url: str, w: Any, truth: dict[str, Any]) -> None:
    """The GraphQL API answers for Aptos accounts (0x + 64 hex) from the same tables as for the other families."""
    from gqlapi.testing import ApiClient

    api = ApiClient(db_url, max_page_size=1000)
    try:
        for acct in (w.alice, w.bob):
            owner = address(str(acct.address()))
            d = api.q('query($o: String!) { portfolio(owner: $o, chain: "apt") { holdings { batchId tradable retired '
                      'batch { projectId } } certificates { beneficiary reason amount } } }', {"o": owner})["portfolio"]
            want = {b: v for (o, b), v in truth["holdings"].items() if o == owner}
            assert {int(h["batchId"]): (int(h["tradable"]), int(h["retired"])) for h in d["holdings"]} == want
            assert all(h["batch"]["projectId"] == f"VCS-{int(h['batchId']) - 1}" for h in d["holdings"])
            assert sorted((c["beneficiary"], c["reason"], int(c["amount"])) for c in d["certificates"]) == \
                sorted((ben, rea, a) for o, _, a, ben, rea in truth["retirements"] if o == owner)
    finally:
        api.close()


def test_pruned_start_is_a_config_error(aptos, db_url):
    from core.config import ConfigError

    w = aptos
    w.node.commit()
    w.node.prune(2)
    with pytest.raises(ConfigError, match="start_block: version 0 is pruned"):
        run_once(aptos_settings(w, db_url), db_url=db_url, timeout_s=10)


def test_an_aptos_certificate_verifies_from_the_node_alone(aptos, db_url):
    """The command `Certificate.verification` prints for an Aptos chain (`--family aptos --package 0x…`) rebuilds the
    certificate from the node alone: run as printed, without a config, it exits 0 and agrees with the database."""
    import json
    import os
    import subprocess
    import sys

    from core.verifycmd import verify_command
    from gqlapi.app import configured_contracts

    w = aptos
    run_scenario(w, actions=20, seed=5)
    certify(w)
    settings = aptos_settings(w, db_url)
    assert run_once(settings, db_url=db_url, timeout_s=120) == 0
    known = configured_contracts(settings)["apt"]
    assert known["family"] == "aptos" and known["package"] == w.package
    with psycopg.connect(libpq_url(db_url)) as conn:
        cert, holder, amount = conn.execute("SELECT certificate_id, holder, amount FROM retirement WHERE chain = 'apt' "
                                            "ORDER BY block_number LIMIT 1").fetchone()
    cmd = verify_command(int(cert), known["contracts"], known["start"], family="aptos", package=known["package"])
    assert f"--family aptos --package {w.package}" in cmd and "--contract" not in cmd
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARBONLEDGER_")}
    env["CARBONLEDGER_CONFIG"] = os.devnull
    out = subprocess.run([sys.executable, "-m", "carbonledger.cli", *cmd.replace("RPC_URL", w.url).split()[1:], "--json"],
                         capture_output=True, text=True, timeout=300, env=env, cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    report = json.loads(out.stdout)
    assert report["ok"] and int(report["facts"]["amount"]) == int(amount), report
