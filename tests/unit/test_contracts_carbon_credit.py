"""CarbonCredit (ERC-1155 credit batches): issuance, minting, transfers, retirement, roles."""

from types import SimpleNamespace

import pytest
from eth_utils import keccak
from web3 import EthereumTesterProvider, Web3

from chains.evm.deploy import deploy_protocol
from tests.unit.contracts_fixtures import _snapshot, events, reverts_for, send  # noqa: F401 (_snapshot: autouse fixture)


@pytest.fixture(scope="module")
def env():
    w3 = Web3(EthereumTesterProvider())
    a = w3.eth.accounts
    dep = deploy_protocol(w3, a[0], roles={"ISSUER": [a[1]]}, uri="ipfs://credits/{id}.json")
    return SimpleNamespace(w3=w3, admin=a[0], issuer=a[1], alice=a[2], bob=a[3], eve=a[4],
                           cc=dep.contract(w3, "CarbonCredit"))


CONTRACT = "CarbonCredit"
reverts = reverts_for(CONTRACT)
ISSUER_ROLE = keccak(text="ISSUER_ROLE")
META = keccak(text="metadata")


def new_batch(env, project="VCS-1234", vintage=2021):
    r = send(env.cc.functions.createBatch(project, vintage, "VM0007", "Verra", f"SN-{project}", META), env.issuer)
    return events(env.cc, r, "BatchCreated")[0]["batchId"]


def mint(env, to, batch_id, amount, tag="v"):
    return send(env.cc.functions.mint(to, batch_id, amount, keccak(text=f"{tag}-{to}-{batch_id}")), env.issuer)


# ---- tests ----
def test_role_constants_and_admin(env):
    cc = env.cc
    assert cc.functions.ISSUER_ROLE().call() == ISSUER_ROLE
    assert cc.functions.hasRole(b"\0" * 32, env.admin).call()
    assert cc.functions.hasRole(ISSUER_ROLE, env.issuer).call()
    assert not cc.functions.hasRole(ISSUER_ROLE, env.admin).call()
    assert cc.functions.uri(1).call() == "ipfs://credits/{id}.json"


def test_supports_interfaces(env):
    for iface in ("d9b67a26", "0e89341c", "7965db0b", "01ffc9a7"):  # ERC1155, MetadataURI, AccessControl, 165
        assert env.cc.functions.supportsInterface(bytes.fromhex(iface)).call()
    assert not env.cc.functions.supportsInterface(bytes.fromhex("ffffffff")).call()


def test_create_batch_sequential_ids_and_event(env):
    r = send(env.cc.functions.createBatch("VCS-1", 2019, "VM0015", "Verra", "SN-1", META), env.issuer)
    (ev,) = events(env.cc, r, "BatchCreated")
    assert ev == {"batchId": 1, "projectId": "VCS-1", "vintage": 2019, "methodology": "VM0015",
                  "registry": "Verra", "serialNumber": "SN-1", "metadataHash": META}
    assert new_batch(env, "GS-2") == 2
    assert env.cc.functions.batchCount().call() == 2
    assert tuple(env.cc.functions.batches(1).call()) == ("VCS-1", 2019, "VM0015", "Verra", "SN-1", META)


def test_create_batch_requires_issuer(env):
    with reverts("AccessControlUnauthorizedAccount", account=env.alice, neededRole=ISSUER_ROLE):
        env.cc.functions.createBatch("X", 2020, "m", "r", "s", META).transact({"from": env.alice})
    with reverts("AccessControlUnauthorizedAccount", account=env.admin):
        env.cc.functions.createBatch("X", 2020, "m", "r", "s", META).transact({"from": env.admin})


def test_admin_can_grant_issuer(env):
    send(env.cc.functions.grantRole(ISSUER_ROLE, env.bob), env.admin)
    send(env.cc.functions.createBatch("X", 2020, "m", "r", "s", META), env.bob)
    with reverts("AccessControlUnauthorizedAccount", account=env.issuer, neededRole=b"\0" * 32):
        env.cc.functions.grantRole(ISSUER_ROLE, env.eve).transact({"from": env.issuer})


def test_mint_emits_transfer_single_then_minted(env):
    b = new_batch(env)
    vh = keccak(text="verification-1")
    r = send(env.cc.functions.mint(env.alice, b, 500, vh), env.issuer)
    (ts,) = events(env.cc, r, "TransferSingle")
    assert ts == {"operator": env.issuer, "from": "0x" + "00" * 20, "to": env.alice, "id": b, "value": 500}
    (m,) = events(env.cc, r, "Minted")
    assert m == {"to": env.alice, "batchId": b, "amount": 500, "verificationHash": vh}
    topics = [log["topics"][0] for log in r["logs"]]
    assert topics == [keccak(text="TransferSingle(address,address,address,uint256,uint256)"),
                      keccak(text="Minted(address,uint256,uint256,bytes32)")]
    assert env.cc.functions.balanceOf(env.alice, b).call() == 500
    assert env.cc.functions.totalSupply(b).call() == 500
    assert env.cc.functions.usedVerification(vh).call()
    assert not env.cc.functions.usedVerification(keccak(text="other")).call()


def test_mint_rejects_repeated_verification_hash(env):
    b1, b2 = new_batch(env, "A"), new_batch(env, "B")
    vh = keccak(text="dup")
    send(env.cc.functions.mint(env.alice, b1, 1, vh), env.issuer)
    with reverts("VerificationAlreadyUsed", verificationHash=vh):
        env.cc.functions.mint(env.bob, b2, 7, vh).transact({"from": env.issuer})
    assert env.cc.functions.balanceOf(env.bob, b2).call() == 0


def test_mint_checks(env):
    b = new_batch(env)
    with reverts("AccessControlUnauthorizedAccount", account=env.alice, neededRole=ISSUER_ROLE):
        env.cc.functions.mint(env.alice, b, 1, keccak(text="x")).transact({"from": env.alice})
    with reverts("UnknownBatch", batchId=b + 1):
        env.cc.functions.mint(env.alice, b + 1, 1, keccak(text="x")).transact({"from": env.issuer})
    with reverts("UnknownBatch", batchId=0):
        env.cc.functions.mint(env.alice, 0, 1, keccak(text="x")).transact({"from": env.issuer})
    with reverts("ZeroAmount"):
        env.cc.functions.mint(env.alice, b, 0, keccak(text="x")).transact({"from": env.issuer})


def test_transfers_single_and_batch(env):
    b1, b2 = new_batch(env, "A"), new_batch(env, "B")
    mint(env, env.alice, b1, 100)
    mint(env, env.alice, b2, 50)
    r = send(env.cc.functions.safeTransferFrom(env.alice, env.bob, b1, 30, b""), env.alice)
    assert events(env.cc, r, "TransferSingle") == [
        {"operator": env.alice, "from": env.alice, "to": env.bob, "id": b1, "value": 30}]
    r = send(env.cc.functions.safeBatchTransferFrom(env.alice, env.bob, [b1, b2], [10, 20], b""), env.alice)
    assert events(env.cc, r, "TransferBatch") == [
        {"operator": env.alice, "from": env.alice, "to": env.bob, "ids": [b1, b2], "values": [10, 20]}]
    assert env.cc.functions.balanceOfBatch([env.alice, env.bob, env.alice, env.bob], [b1, b1, b2, b2]).call() == [
        60, 40, 30, 20]
    with reverts("ERC1155MissingApprovalForAll", operator=env.eve, owner=env.alice):
        env.cc.functions.safeTransferFrom(env.alice, env.eve, b1, 1, b"").transact({"from": env.eve})


def test_retire_burns_and_numbers_certificates(env):
    b = new_batch(env)
    mint(env, env.alice, b, 100)
    mint(env, env.bob, b, 10, tag="bob")
    cc = env.cc
    r = send(cc.functions.retire(b, 40, "ACME Ltd", "2024 scope 1 offset"), env.alice)
    (burn,) = events(cc, r, "TransferSingle")
    assert burn == {"operator": env.alice, "from": env.alice, "to": "0x" + "00" * 20, "id": b, "value": 40}
    (ret,) = events(cc, r, "Retired")
    assert ret == {"certificateId": 1, "holder": env.alice, "batchId": b, "amount": 40,
                   "beneficiary": "ACME Ltd", "reason": "2024 scope 1 offset"}
    assert cc.functions.balanceOf(env.alice, b).call() == 60
    assert cc.functions.totalSupply(b).call() == 70
    assert cc.functions.totalRetired(b).call() == 40

    r2 = send(cc.functions.retire(b, 5, "Bob", ""), env.bob)
    r3 = send(cc.functions.retire(b, 60, "ACME Ltd", "rest"), env.alice)
    assert [events(cc, x, "Retired")[0]["certificateId"] for x in (r2, r3)] == [2, 3]
    assert cc.functions.certificateCount().call() == 3
    assert cc.functions.totalRetired(b).call() == 105
    assert cc.functions.totalSupply(b).call() == 5
    assert cc.functions.balanceOf(env.alice, b).call() == 0


def test_retire_checks(env):
    b = new_batch(env)
    mint(env, env.alice, b, 10)
    with reverts("ERC1155InsufficientBalance", sender=env.alice, balance=10, needed=11, tokenId=b):
        env.cc.functions.retire(b, 11, "x", "y").transact({"from": env.alice})
    with reverts("ERC1155InsufficientBalance", sender=env.eve, balance=0):
        env.cc.functions.retire(b, 1, "x", "y").transact({"from": env.eve})
    with reverts("UnknownBatch", batchId=99):
        env.cc.functions.retire(99, 1, "x", "y").transact({"from": env.alice})
    with reverts("ZeroAmount"):
        env.cc.functions.retire(b, 0, "x", "y").transact({"from": env.alice})
    assert env.cc.functions.certificateCount().call() == 0
