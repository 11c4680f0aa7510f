"""The two devnets: in-process eth-tester over JSON-RPC, and anvil from npm."""

from __future__ import annotations

import httpx
from eth_account import Account
from web3 import Web3

from core.devnet import DEVNET_ACCOUNTS, DEVNET_KEYS
from chains.evm.rpc import RpcClient, RpcError


def _send_value(w3: Web3) -> dict:
    acct = Account.from_key(DEVNET_KEYS[0])
    tx = {
        "to": DEVNET_ACCOUNTS[1], "value": 12345, "gas": 21000, "chainId": w3.eth.chain_id,
        "nonce": w3.eth.get_transaction_count(acct.address), "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9,
    }
    h = w3.eth.send_raw_transaction(acct.sign_transaction(tx).raw_transaction)
    return w3.eth.wait_for_transaction_receipt(h, timeout=10)


def test_devnet_serves_json_rpc(devnet_server):
    w3 = Web3(Web3.HTTPProvider(devnet_server.url))
    assert w3.eth.get_balance(DEVNET_ACCOUNTS[2]) > 0
    before = w3.eth.get_balance(DEVNET_ACCOUNTS[1])
    receipt = _send_value(w3)
    assert receipt.status == 1
    assert w3.eth.get_balance(DEVNET_ACCOUNTS[1]) == before + 12345
    block = w3.eth.get_block(receipt.blockNumber)
    assert block.hash == receipt.blockHash
    assert w3.eth.get_block(receipt.blockNumber - 1).hash == block.parentHash


def test_devnet_errors_are_json_rpc_errors(devnet_server):
    r = httpx.post(devnet_server.url, content=b"{not json")
    assert r.json()["error"]["code"] == -32700
    with RpcClient(devnet_server.url, retries=0) as rpc:
        try:
            rpc.call("eth_noSuchMethod")
        except RpcError as err:
            assert isinstance(err.code, int)
        else:
            raise AssertionError("unknown method must be an error")
        assert rpc.batch([("eth_chainId", []), ("eth_blockNumber", [])])[0] == hex(devnet_server.devnet.chain_id)


def test_anvil_starts_and_stops(anvil):
    w3 = Web3(Web3.HTTPProvider(anvil.url))
    assert w3.eth.chain_id == 31337
    assert _send_value(w3).status == 1
    snap = anvil.rpc("evm_snapshot")
    n = w3.eth.block_number
    anvil.rpc("evm_mine")
    assert w3.eth.block_number == n + 1
    anvil.rpc("evm_revert", [snap])
    assert w3.eth.block_number == n
    proc = anvil.proc
    anvil.stop()
    assert proc.poll() is not None


def test_devnet_malformed_params_are_json_rpc_errors(devnet_server):
    """`params` that is not an array is the caller's mistake: a JSON-RPC error (-32602), not an HTTP 500."""
    for params in (5, "x", {"a": 1}):
        r = httpx.post(devnet_server.url, json={"jsonrpc": "2.0", "id": 7, "method": "eth_blockNumber", "params": params})
        assert r.status_code == 200, r.text
        assert r.json()["id"] == 7 and r.json()["error"]["code"] == -32602
    r = httpx.post(devnet_server.url, json=[{"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": 5},
                                            {"jsonrpc": "2.0", "id": 2, "method": "eth_chainId", "params": []}])
    assert [x.get("error", {}).get("code") for x in r.json()] == [-32602, None]
