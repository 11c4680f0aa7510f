"""`carbonledger verify` and `carbonledger certificate` on anvil: an auditor's checks from the chain alone.

A random protocol history (transfers, listings, sales paid on and off chain, retirements) plus one known custody
chain (mint → transfer → listing → off-chain sale → retirement) is indexed; then every certificate is rebuilt
from the chain and must equal the API's provenance; a tampered database is caught through the API; a certificate
keeps verifying with the database gone; a forged IoT proof is rejected; a retirement reorged out is reported."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from web3 import Web3

from carbonledger.verify import verify_certificate, verify_payment, verify_reading
from indexer.runner import chain_reader, run_once
from tests.integration.scenario import deploy, index_env, run_scenario, settings_for

pytestmark = pytest.mark.anvil
ROOT = Path(__file__).resolve().parents[2]


def _wait(w3, tx):
    return w3.eth.wait_for_transaction_receipt(tx, timeout=120)


@dataclass
class World:
    anvil: Any
    w3: Web3
    dep: Any
    settings: Any
    api: Any
    cert: int


@pytest.fixture(scope="module")
def world(pg_factory):
    """One chain, database and API for the module (building them is most of the cost); the tests that change
    something undo it, and the reorg test, which cannot be undone, runs last."""
    from core.anvil import Anvil

    with Anvil() as anvil:
        w3 = Web3(Web3.HTTPProvider(anvil.url))
        dep = deploy(w3)
        run_scenario(w3, dep, actions=40, seed=11)
        cc, mk = dep.contract(w3, "CarbonCredit"), dep.contract(w3, "Marketplace")
        admin, a, b, c = w3.eth.accounts[0], w3.eth.accounts[7], w3.eth.accounts[8], w3.eth.accounts[9]
        _wait(w3, cc.functions.createBatch("PRJ-KNOWN", 2024, "VM0047", "verra", "VCS-1-100", b"\x05" * 32).transact({"from": admin}))
        batch = cc.functions.batchCount().call()
        _wait(w3, cc.functions.mint(a, batch, 100, b"\x07" * 32).transact({"from": admin}))
        _wait(w3, cc.functions.safeTransferFrom(a, b, batch, 60, b"").transact({"from": a}))
        _wait(w3, cc.functions.setApprovalForAll(mk.address, True).transact({"from": b}))
        _wait(w3, mk.functions.list(batch, 40, 10**12).transact({"from": b}))
        listing = mk.functions.listingCount().call()
        _wait(w3, mk.functions.settleOffchain(listing, c, 25, "pi_known_payment").transact({"from": admin}))
        _wait(w3, cc.functions.retire(batch, 20, "Acme Ltd", "2025 offset").transact({"from": c}))
        cert = cc.functions.certificateCount().call()
        db_url = pg_factory.fresh()
        settings = settings_for(anvil.url, dep, db_url, finality_depth=2)
        assert run_once(settings, db_url=db_url) == 0
        api = _served(settings)
        try:
            yield World(anvil, w3, dep, settings, api, cert)
        finally:
            api.close()
            pg_factory.drop(db_url)


def _reader(settings):
    name, cs = next(iter(settings.chains.items()))
    reader, addresses, start = chain_reader(name, cs)
    return reader, addresses, start


def _served(settings):
    from gqlapi.testing import Served

    env = index_env(settings)
    return Served(settings.database.url, CARBONLEDGER_CHAINS=env["CARBONLEDGER_CHAINS"]).wait_ready()


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "carbonledger.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=env)


def _env(**extra):
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("CARBONLEDGER_")}
    env["CARBONLEDGER_CONFIG"] = os.devnull
    return {**env, **extra}


def _verify(world, cert, api=True):
    reader, addresses, start = _reader(world.settings)
    return verify_certificate(reader, cert, from_block=start, market=addresses["Marketplace"], finality_depth=2,
                              api_url=world.api.base if api else None)


def _failed(report):
    return {c.name: c.detail for c in report.checks if not c.ok}


def test_every_certificate_is_rebuilt_from_the_chain_and_equals_the_api(world):
    import httpx

    q = "{ certificates(first: 500) { nodes { id verification { contract txHash blockHash command } } } }"
    nodes = httpx.post(world.api.base + "/graphql", json={"query": q}, timeout=30).json()["data"]["certificates"]["nodes"]
    assert len(nodes) >= 2 and str(world.cert) in {n["id"] for n in nodes}
    for n in nodes:
        report = _verify(world, int(n["id"]))
        assert report.ok, (n["id"], _failed(report))
        assert {c.name for c in report.checks} >= {"found", "canonical", "reaches_mint", "api", "api_canonical",
                                                   "api_serials"}
    known = _verify(world, world.cert, api=False)
    assert [(m.kind, m.amount, m.payment_ref) for m in known.events] == [
        ("mint", 100, None), ("transfer", 60, None), ("list", 40, None), ("sale", 25, "pi_known_payment"),
        ("retirement", 20, None)]
    assert known.events[0].verification_hash == "0x" + "07" * 32
    assert known.facts["batch"]["serialNumber"] == "VCS-1-100"
    assert known.facts["serial_range"] == "VCS-1-20"  # the batch's first retirement: serials 1..20 (FIFO)
    mine = next(n for n in nodes if n["id"] == str(world.cert))
    assert mine["verification"]["contract"].lower() == world.dep.address("CarbonCredit").lower()
    # The field's command, run as given (with a node's URL), verifies with no database at all: the one configured
    # for it does not exist.
    args = mine["verification"]["command"].replace("RPC_URL", world.anvil.url).split()[1:]
    out = _cli(*args, "--json", env=_env(CARBONLEDGER_DATABASE_URL="postgresql://nobody@127.0.0.1:1/gone"))
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert json.loads(out.stdout)["ok"] is True


def test_the_report_for_people_names_each_step(world):
    cc, mk = world.dep.address("CarbonCredit"), world.dep.address("Marketplace")
    out = _cli("verify", "certificate", str(world.cert), "--rpc", world.anvil.url, "--contract", f"CarbonCredit={cc}",
               "--contract", f"Marketplace={mk}", env=_env())
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert out.stdout.startswith(f"VERIFIED certificate {world.cert}") and "pi_known_payment" in out.stdout
    unknown = _cli("verify", "certificate", "999999", "--rpc", world.anvil.url, "--contract", f"CarbonCredit={cc}",
                   "--contract", f"Marketplace={mk}", env=_env())
    assert unknown.returncode == 1 and "NOT VERIFIED" in unknown.stdout and "no Retired event" in unknown.stdout


def test_a_tampered_database_is_caught_through_the_api(world):
    import psycopg

    with psycopg.connect(world.settings.database.url, autocommit=True) as conn:
        conn.execute("UPDATE trade SET payment_ref = 'pi_forged' WHERE payment_ref = 'pi_known_payment'")
        try:
            report = _verify(world, world.cert)
        finally:
            conn.execute("UPDATE trade SET payment_ref = 'pi_known_payment' WHERE payment_ref = 'pi_forged'")
    failed = _failed(report)
    assert set(failed) == {"api"}, failed
    assert "pi_forged" in failed["api"] and "pi_known_payment" in failed["api"]


def test_payments_are_found_written_once(world):
    reader, addresses, start = _reader(world.settings)
    ok = verify_payment(reader, "pi_known_payment", from_block=start, finality_depth=2)
    assert ok.ok and len(ok.events) == 1 and ok.events[0].kind == "Marketplace.Sold"
    missing = verify_payment(reader, "pi_never_paid", from_block=start, finality_depth=2)
    assert not missing.ok and "no on-chain write" in missing.checks[0].detail


def test_an_iot_reading_with_a_forged_proof_is_rejected(world, tmp_path):
    import rfc8785

    from chains.merkle import build_tree, hash_leaf

    w3, dep = world.w3, world.dep
    readings = [rfc8785.dumps({"device_id": f"dev-{i}", "ts": 1_700_000_000 + i, "metrics": {"co2_ppm": 400 + i}}).decode()
                for i in range(5)]
    tree = build_tree([hash_leaf(r.encode()) for r in readings])
    anchor = dep.contract(w3, "IoTAnchor")
    _wait(w3, anchor.functions.anchor(tree.root, 5, 1_700_000_000, 1_700_000_004, 10000).transact({"from": w3.eth.accounts[0]}))
    proof = {"device_id": "dev-2", "ts": 1_700_000_002, "canonical": readings[2],
             "leaf": "0x" + tree.leaves[2].hex(), "proof": ["0x" + p.hex() for p in tree.proof(2)],
             "root": "0x" + tree.root.hex()}
    reader, addresses, start = _reader(world.settings)
    good = verify_reading(reader, proof, addresses["IoTAnchor"], from_block=start, finality_depth=2)
    assert good.ok, _failed(good)
    first = proof["proof"][0]
    forged = dict(proof, proof=[first[:-2] + ("00" if first[-2:] != "00" else "01"), *proof["proof"][1:]])
    bad = verify_reading(reader, forged, addresses["IoTAnchor"], from_block=start, finality_depth=2)
    assert set(_failed(bad)) == {"proof", "on_chain"}
    altered = dict(proof, canonical=readings[2].replace("402", "401"))
    assert "leaf" in _failed(verify_reading(reader, altered, addresses["IoTAnchor"], from_block=start, finality_depth=2))
    path = tmp_path / "forged.json"
    path.write_text(json.dumps(forged))
    out = _cli("verify", "reading", str(path), "--rpc", world.anvil.url, "--contract",
               f"IoTAnchor={dep.address('IoTAnchor')}", env=_env())
    assert out.returncode == 1 and "NOT VERIFIED" in out.stdout and "Traceback" not in out.stderr, out.stdout + out.stderr


def test_the_printed_certificate_carries_the_facts_and_a_qr_code(world, tmp_path):
    page = tmp_path / "cert.html"
    cc, mk = world.dep.address("CarbonCredit"), world.dep.address("Marketplace")
    out = _cli("certificate", str(world.cert), "--out", str(page), "--rpc", world.anvil.url, "--contract",
               f"CarbonCredit={cc}", "--contract", f"Marketplace={mk}", env=_env())
    assert out.returncode == 0, out.stdout + out.stderr
    html = page.read_text()
    assert "Acme Ltd" in html and "VCS-1-100" in html and "VCS-1-20" in html and "pi_known_payment" in html and "<svg" in html
    assert f"carbonledger verify certificate {world.cert} --rpc RPC_URL --contract CarbonCredit={cc}" in html
    pdf = _cli("certificate", str(world.cert), "--out", str(tmp_path / "c.pdf"), "--rpc", world.anvil.url, env=_env())
    assert pdf.returncode != 0 and pdf.stderr.count("\n") == 1 and "HTML" in pdf.stderr


def _log_emitter(w3, topic: bytes) -> str:
    """A contract whose every call emits LOG1(topic) with no data: an event of a followed ABI that cannot decode."""
    runtime = b"\x7f" + topic + bytes.fromhex("60006000a100")  # PUSH32 topic; PUSH1 0 (size); PUSH1 0 (offset); LOG1; STOP
    init = bytes.fromhex(f"60{len(runtime):02x}600c600039{'60%02x' % len(runtime)}6000f3") + runtime
    r = _wait(w3, w3.eth.send_transaction({"from": w3.eth.accounts[0], "data": init}))
    return r["contractAddress"]


def test_an_undecodable_log_of_a_followed_contract_is_one_line_with_the_fix(world, tmp_path):
    """A followed address that emits a log of the protocol's ABI which does not decode (here: an Auction event
    topic with no data) stops the check with one line naming the block, the transaction and what to check; it was
    an "unexpected error" inviting a bug report."""
    from eth_utils import event_abi_to_log_topic

    abi = json.loads((ROOT / "abis" / "Auction.json").read_text())
    abi = abi["abi"] if isinstance(abi, dict) else abi
    event = next(e for e in abi if e["type"] == "event" and any(not i["indexed"] for i in e["inputs"]))
    emitter = _log_emitter(world.w3, event_abi_to_log_topic(event))
    tx = _wait(world.w3, world.w3.eth.send_transaction({"from": world.w3.eth.accounts[0], "to": emitter}))
    assert tx["logs"], "the emitter logged nothing"
    contracts = [f"--contract={n}={c.address}" for n, c in world.dep.contracts.items() if n != "Auction"]
    out = _cli("verify", "certificate", str(world.cert), "--rpc", world.anvil.url, *contracts,
               f"--contract=Auction={emitter}", "--from-block", "0", env=_env())
    assert out.returncode == 1, out
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "unexpected error" not in lines[0] and "Traceback" not in out.stderr
    assert f"block {tx['blockNumber']}" in lines[0] and "cannot be decoded" in lines[0], lines[0]
    assert "— check that --contract names the protocol's own contracts" in lines[0], lines[0]


def test_zz_a_retirement_reorged_out_is_reported_not_canonical(world):
    """Last in the module: a reorg cannot be undone. A new retirement is indexed and served, then its block is
    replaced; the API (whose indexer has not run since) still shows it."""
    w3, cc = world.w3, world.dep.contract(world.w3, "CarbonCredit")
    holder = next(a for a in w3.eth.accounts[1:] if any(cc.functions.balanceOf(a, b).call() for b in range(1, 4)))
    batch = next(b for b in range(1, 4) if cc.functions.balanceOf(holder, b).call())
    _wait(w3, cc.functions.retire(batch, 1, "Reorged Co", "gone").transact({"from": holder}))
    cert = cc.functions.certificateCount().call()
    assert run_once(world.settings, db_url=world.settings.database.url) == 0
    assert _verify(world, cert).ok
    world.anvil.rpc("anvil_reorg", [1, []])  # the retirement's block replaced by an empty one
    failed = _failed(_verify(world, cert))
    assert "found" in failed and "api_canonical" in failed, failed
    assert "not on the node's chain" in failed["api_canonical"]
