"""`carbonledger deploy` against a real JSON-RPC node writes a deployment the config can point at."""

from __future__ import annotations

import json

import pytest
from web3 import Web3

from carbonledger.cli import main
from chains.evm.deploy import resolved_contracts
from core.config import load_settings


def test_deploy_writes_deployment_and_config_resolves_it(anvil, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["deploy", "--rpc", anvil.url, "--chain", "local", "--devnet-key"]) == 0
    dep = json.loads((tmp_path / "deployments/local.json").read_text())
    assert dep["chainId"] == 31337
    assert set(dep["contracts"]) >= {"CarbonCredit", "Marketplace", "Escrow", "QRPayment", "IoTAnchor"}
    w3 = Web3(Web3.HTTPProvider(anvil.url))
    for c in dep["contracts"].values():
        assert len(w3.eth.get_code(c["address"])) > 0
    (tmp_path / "carbonledger.toml").write_text(
        f'[chains.local]\nrpc_url = "{anvil.url}"\ndeployment = "deployments/local.json"\n'
    )
    contracts = resolved_contracts(load_settings().chains["local"], "local")
    assert contracts["IoTAnchor"].address == dep["contracts"]["IoTAnchor"]["address"]
    assert contracts["CarbonCredit"].start_block == dep["contracts"]["CarbonCredit"]["startBlock"]


def test_deploy_refuses_without_a_key(anvil, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CARBONLEDGER_DEPLOYER_KEY", raising=False)
    assert main(["deploy", "--rpc", anvil.url]) == 2
    assert "CARBONLEDGER_DEPLOYER_KEY" in capsys.readouterr().err


def test_deploy_names_an_unreachable_node(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    from core.anvil import free_port

    assert main(["deploy", "--rpc", f"http://127.0.0.1:{free_port()}", "--devnet-key"]) == 1  # not a config error
    err = capsys.readouterr().err
    assert "no JSON-RPC node answers" in err and " — " in err and "--wait" in err


@pytest.mark.parametrize("bad", ["0x1234", "not-hex" * 10])
def test_deploy_rejects_a_bad_key_without_echoing_it(anvil, tmp_path, monkeypatch, capsys, bad):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CARBONLEDGER_DEPLOYER_KEY", bad)
    assert main(["deploy", "--rpc", anvil.url]) == 2
    err = capsys.readouterr().err
    assert "CARBONLEDGER_DEPLOYER_KEY" in err and bad not in err
