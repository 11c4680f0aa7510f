"""deploy_protocol / Deployment (JSON file format, roles, LocalAccount signing), the artefact loader, and the
EventFlood benchmark helper's compatibility with CarbonCredit's event ABI."""

import json

import pytest
from eth_account import Account
from eth_utils import event_abi_to_log_topic, keccak
from web3 import EthereumTesterProvider, Web3
from web3.logs import DISCARD

from chains.evm import artifacts
from chains.evm.deploy import ROLE_CONTRACTS, Deployment, deploy_contract, deploy_protocol, role_id

NAMES = ["Auction", "CarbonCredit", "Escrow", "IoTAnchor", "Marketplace", "QRPayment"]


@pytest.fixture(scope="module")
def w3():
    return Web3(EthereumTesterProvider())


@pytest.fixture(scope="module")
def dep(w3):
    return deploy_protocol(w3, w3.eth.accounts[0])


def test_default_deployment_grants_every_role_to_deployer(w3, dep):
    admin = w3.eth.accounts[0]
    assert sorted(dep.contracts) == NAMES
    assert dep.chain_id == w3.eth.chain_id
    for role, names in ROLE_CONTRACTS.items():
        for name in names:
            c = dep.contract(w3, name)
            assert getattr(c.functions, role)().call() == role_id(role)
            assert c.functions.hasRole(role_id(role), admin).call()
    for name in NAMES:
        c = dep.contract(w3, name)
        assert c.functions.hasRole(b"\0" * 32, admin).call()
        info = dep.contracts[name]
        receipt = w3.eth.get_transaction_receipt(info.tx_hash)
        assert receipt["contractAddress"] == info.address and receipt["blockNumber"] == info.block_number
    assert dep.contract(w3, "Marketplace").functions.credit().call() == dep.address("CarbonCredit")
    # the artefact's runtime code is what is on chain (CarbonCredit has no immutables)
    assert w3.eth.get_code(dep.address("CarbonCredit")).hex() == artifacts.deployed_bytecode("CarbonCredit")[2:]


def test_deployment_json_round_trip(dep, tmp_path):
    path = tmp_path / "deployments" / "devnet.json"
    dep.write(path)
    data = json.loads(path.read_text())
    assert set(data) == {"chainId", "contracts"} and data["chainId"] == dep.chain_id
    for name, c in data["contracts"].items():
        assert set(c) == {"address", "startBlock", "txHash"}
        assert Web3.is_checksum_address(c["address"])
        assert c["txHash"].startswith("0x") and len(c["txHash"]) == 66
        assert isinstance(c["startBlock"], int)
    assert Deployment.load(path) == dep
    assert Deployment.from_json(dep.to_json()) == dep


def test_local_account_and_custom_roles(w3):
    acct = Account.create()
    w3.eth.send_transaction({"from": w3.eth.accounts[0], "to": acct.address, "value": 10**19})
    a = w3.eth.accounts
    dep = deploy_protocol(w3, acct, roles={"ISSUER_ROLE": [a[1], a[2]], "oracle": [a[3]], "SETTLER": []})
    cc, es, qr = (dep.contract(w3, n) for n in ("CarbonCredit", "Escrow", "QRPayment"))
    assert cc.functions.hasRole(role_id("ISSUER"), a[1]).call() and cc.functions.hasRole(role_id("ISSUER"), a[2]).call()
    assert not cc.functions.hasRole(role_id("ISSUER"), acct.address).call()
    assert es.functions.hasRole(role_id("ORACLE"), a[3]).call()
    assert es.functions.hasRole(role_id("ARBITER"), acct.address).call()  # unlisted role: deployer
    assert not qr.functions.hasRole(role_id("SETTLER"), acct.address).call()  # empty list: nobody
    assert qr.functions.hasRole(b"\0" * 32, acct.address).call()
    with pytest.raises(ValueError, match="unknown role"):
        deploy_protocol(w3, a[0], roles={"MINTER": [a[1]]})
    with pytest.raises(TypeError):
        deploy_protocol(w3, 42)


def test_artifact_loader():
    art = artifacts.load_artifact("CarbonCredit")
    assert art is artifacts.load_artifact("CarbonCredit")  # cached
    assert art["contractName"] == "CarbonCredit" and artifacts.abi("CarbonCredit") == art["abi"]
    assert artifacts.bytecode("Escrow").startswith("0x60")
    assert art["compiler"]["evmVersion"] == "cancun"
    assert art["compiler"]["optimizer"] == {"enabled": True, "runs": 200}
    with pytest.raises(FileNotFoundError, match="compile-contracts"):
        artifacts.load_artifact("Nope")


def _events(name):
    return {e["name"]: e for e in artifacts.abi(name) if e["type"] == "event"}


def test_event_flood_matches_carbon_credit_events():
    cc, flood = _events("CarbonCredit"), _events("EventFlood")
    for name in ("TransferSingle", "BatchCreated", "Minted", "Retired"):
        assert flood[name] == cc[name], name
        assert event_abi_to_log_topic(flood[name]) == event_abi_to_log_topic(cc[name])


def test_event_flood_emits_decodable_protocol_events(w3):
    a = w3.eth.accounts
    info = deploy_contract(w3, a[0], "EventFlood")
    flood = w3.eth.contract(address=info.address, abi=artifacts.abi("EventFlood"))
    as_cc = w3.eth.contract(address=info.address, abi=artifacts.abi("CarbonCredit"))
    holders = a[1:9]
    tx = flood.functions.flood(100, 10, holders, 25).transact({"from": a[0]})
    r = w3.eth.wait_for_transaction_receipt(tx)
    assert r["status"] == 1 and len(r["logs"]) == 10 * (1 + 2 * len(holders))
    assert r["gasUsed"] < 1_000_000, r["gasUsed"]
    created = as_cc.events.BatchCreated().process_receipt(r, errors=DISCARD)
    assert [e["args"]["batchId"] for e in created] == list(range(100, 110))
    assert created[0]["args"]["projectId"] == "BENCH-100" and created[0]["args"]["serialNumber"] == "SN-100"
    minted = as_cc.events.Minted().process_receipt(r, errors=DISCARD)
    transfers = as_cc.events.TransferSingle().process_receipt(r, errors=DISCARD)
    assert len(minted) == len(transfers) == 80
    assert len({m["args"]["verificationHash"] for m in minted}) == 80
    assert transfers[0]["args"]["from"] == "0x" + "00" * 20 and transfers[0]["args"]["value"] == 25
    assert minted[0]["args"]["verificationHash"] == keccak(
        bytes(12) + bytes.fromhex(info.address[2:]) + (100).to_bytes(32, "big") + bytes(12)
        + bytes.fromhex(holders[0][2:]))

    tx = flood.functions.floodTransfers(100, holders[:4], holders[4:], 3).transact({"from": a[0]})
    r = w3.eth.wait_for_transaction_receipt(tx)
    moves = [dict(e["args"]) for e in as_cc.events.TransferSingle().process_receipt(r, errors=DISCARD)]
    assert [(m["from"], m["to"], m["id"], m["value"]) for m in moves] == [
        (holders[i], holders[4 + i], 100, 3) for i in range(4)]

    tx = flood.functions.floodRetirements(7, 101, holders[:2], 5).transact({"from": a[0]})
    r = w3.eth.wait_for_transaction_receipt(tx)
    retired = as_cc.events.Retired().process_receipt(r, errors=DISCARD)
    assert [(e["args"]["certificateId"], e["args"]["holder"]) for e in retired] == [(7, holders[0]), (8, holders[1])]

    with pytest.raises(Exception) as info_exc:
        flood.functions.floodTransfers(1, holders[:2], holders[:1], 1).transact({"from": a[0]})
    assert artifacts.decode_error(artifacts.revert_data(info_exc.value)) == ("LengthMismatch", {"from": 2, "to": 1})
