"""Signer sources and the key's invisibility; EvmWriter's pure parts (calldata, fee bump, revert decoding)."""

from __future__ import annotations

import json

import pytest
from eth_account import Account

from core.config import OracleSettings
from core.devnet import DEVNET_KEYS
from chains.base import TxRequest
from chains.evm.rpc import RpcError
from chains.evm.writer import EvmWriter, Fees, describe_revert, encode_call
from oracle.signer import ENV_KEY, ENV_PASSPHRASE, SignerError, load_signer

KEY = DEVNET_KEYS[2]


def test_key_from_env_and_config(monkeypatch):
    monkeypatch.setenv(ENV_KEY, KEY)
    k = load_signer(OracleSettings())
    assert k.address == Account.from_key(KEY).address
    assert KEY[2:] not in repr(k) and KEY[2:] not in f"{k}" and KEY[2:] not in str([k])
    monkeypatch.delenv(ENV_KEY)
    assert load_signer(OracleSettings(signer={"private_key": KEY})).address == k.address
    with pytest.raises(SignerError) as e:
        load_signer(OracleSettings())
    assert ENV_KEY in str(e.value)
    monkeypatch.setenv(ENV_KEY, "0x1234")
    with pytest.raises(SignerError) as e:
        load_signer(OracleSettings())
    assert "1234" not in str(e.value)


def test_key_from_keystore(tmp_path, monkeypatch):
    path = tmp_path / "key.json"
    path.write_text(json.dumps(Account.encrypt(KEY, "correct horse", iterations=2)))
    s = OracleSettings(signer={"keystore": path})
    with pytest.raises(SignerError):
        load_signer(s)
    monkeypatch.setenv(ENV_PASSPHRASE, "hunter2-bad")
    with pytest.raises(SignerError) as e:
        load_signer(s)
    assert "hunter2" not in str(e.value)
    monkeypatch.setenv(ENV_PASSPHRASE, "correct horse")
    assert load_signer(s).address == Account.from_key(KEY).address


def test_calldata_matches_web3():
    from web3 import Web3

    from chains.evm.artifacts import abi

    buyer = Account.from_key(KEY).address
    c = Web3().eth.contract(address="0x" + "11" * 20, abi=abi("Marketplace"))
    want = c.encode_abi("settleOffchain", [7, buyer, 10**20, "pi_1"])
    assert "0x" + encode_call("Marketplace", "settleOffchain", ["7", buyer.lower(), str(10**20), "pi_1"]).hex() == want
    c = Web3().eth.contract(address="0x" + "11" * 20, abi=abi("IoTAnchor"))
    root = "0x" + "ab" * 32
    assert "0x" + encode_call("IoTAnchor", "anchor", [root, 3, 1, 2, 9000]).hex() == c.encode_abi(
        "anchor", [bytes.fromhex("ab" * 32), 3, 1, 2, 9000])


def test_fee_bump_at_least_12_5_percent():
    for mf, pf in ((1, 1), (8, 8), (10**9, 10**8), (3_000_000_007, 1_500_000_001)):
        b = Fees(mf, pf).bumped()
        assert b.max_fee * 8 >= mf * 9 and b.priority_fee * 8 >= pf * 9 and b.max_fee > mf and b.priority_fee > pf


def test_sign_is_pure_and_revert_decodes():
    class NoRpc:
        pass

    from core.secrets import PrivateKey

    w = EvmWriter("x", NoRpc(), 31337, PrivateKey(KEY), {"Escrow": "0x" + "22" * 20})
    req = TxRequest("x", "Escrow", "recordOffchainPayment", ("1", "pi_1"))
    h1, raw1 = w.sign(req, 5, {"gas": 100000, "max_fee": 10, "priority_fee": 1})
    h2, raw2 = w.sign(req, 5, {"gas": 100000, "max_fee": 10, "priority_fee": 1})
    assert (h1, raw1) == (h2, raw2)
    assert Account.recover_transaction(raw1) == w.address()
    # byte-identical to eth-account's own signing, over a spread of values
    for nonce, fees, value in ((0, (1, 1, 21000), 0), (5, (10**10, 10**9, 123456), 0), (2**40, (2**70, 2**65, 2**24), 7)):
        r = TxRequest("x", "Escrow", "recordOffchainPayment", (str(nonce + 1), f"pi_{nonce}"), value=value)
        h, raw = w.sign(r, nonce, {"max_fee": fees[0], "priority_fee": fees[1], "gas": fees[2]})
        ref = Account.sign_transaction({"type": 2, "chainId": 31337, "nonce": nonce, "to": w.to(r), "value": value,
                                        "data": encode_call("Escrow", "recordOffchainPayment", r.args), "gas": fees[2],
                                        "maxFeePerGas": fees[0], "maxPriorityFeePerGas": fees[1]}, KEY)
        assert raw == bytes(ref.raw_transaction) and h == "0x" + bytes(ref.hash).hex()
    from eth_abi import encode
    from eth_utils import keccak

    data = "0x" + (keccak(text="PaymentRefUsed(string)")[:4] + encode(["string"], ["pi_1"])).hex()
    assert describe_revert(RpcError(3, "execution reverted", data)) == "PaymentRefUsed(paymentRef='pi_1')"
