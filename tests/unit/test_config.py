"""Config: one strict settings object; bad config fails fast naming the problem."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chains.evm.deploy import resolved_contracts
from core.config import ConfigError, load_settings

GOOD = """
[database]
url = "postgresql://127.0.0.1:5432/carbonledger"

[chains.devnet]
rpc_url = "http://127.0.0.1:8545"
finality_depth = 3

[chains.devnet.contracts.CarbonCredit]
address = "0x5fbdb2315678afecb367f032d93f642f64180aa3"
start_block = 1
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "carbonledger.toml"
    p.write_text(text)
    return p


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    import os

    for k in list(os.environ):
        if k.startswith("CARBONLEDGER_"):
            monkeypatch.delenv(k)


def test_loads_and_checksums(tmp_path):
    s = load_settings(write(tmp_path, GOOD))
    c = s.chains["devnet"]
    assert c.finality_depth == 3
    assert c.contracts["CarbonCredit"].address == "0x5FbDB2315678afecb367f032d93F642f64180aa3"
    assert s.database.url.endswith("/carbonledger")


def test_env_overrides(tmp_path, monkeypatch):
    monkeypatch.setenv("CARBONLEDGER_DATABASE_URL", "postgresql://db.example:5432/other")
    monkeypatch.setenv("CARBONLEDGER_API_PORT", "9090")
    s = load_settings(write(tmp_path, GOOD))
    assert s.database.url == "postgresql://db.example:5432/other"
    assert s.api.port == 9090


@pytest.mark.parametrize("var, value, expected", [
    ("CARBONLEDGER_ORACLE_PROT", "1", "environment variable CARBONLEDGER_ORACLE_PROT is not a setting (did you mean "
                                      "CARBONLEDGER_ORACLE_PORT?)"),
    ("CARBONLEDGER_DATABSE_URL", "postgresql://x/y", "did you mean CARBONLEDGER_DATABASE_URL?"),
    ("CARBONLEDGER_API_PORT", "eighty", "api.port: Input should be a valid integer, unable to parse string as an "
                                        "integer (from environment variable CARBONLEDGER_API_PORT)"),
])
def test_env_typos_and_bad_values_name_the_variable(tmp_path, monkeypatch, var, value, expected):
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as e:
        load_settings(write(tmp_path, GOOD))
    assert expected in str(e.value)
    assert "unknown key" not in str(e.value)


def test_our_other_variables_are_not_typos(tmp_path, monkeypatch):
    for var in ("CARBONLEDGER_SIGNER_KEY", "CARBONLEDGER_DEPLOYER_KEY", "CARBONLEDGER_FIXTURES"):
        monkeypatch.setenv(var, "x")
    load_settings(write(tmp_path, GOOD))


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda t: t.replace("finality_depth", "finality_dept"), "chains.devnet.finality_dept: unknown key"),
        (lambda t: t + "\n[apii]\nport = 1\n", "apii: unknown key"),
        (lambda t: t.replace('"http://127.0.0.1:8545"', '"not a url"'), "chains.devnet.rpc_url"),
        (lambda t: t.replace("postgresql://127.0.0.1", "mysql://127.0.0.1"), "database.url"),
        (lambda t: t.replace("0x5fbdb2315678afecb367f032d93f642f64180aa3", "0x1234"), "not an EVM address"),
        (lambda t: t.replace("[chains.devnet.contracts.CarbonCredit]", "[chains.devnet.contracts.CarbonCoin]"), "CarbonCoin"),
        (lambda t: t.replace("finality_depth = 3", "finality_depth = -1"), "chains.devnet.finality_depth"),
        (lambda t: t + "\n[oracle]\nchain = \"mainnet\"\n", "oracle.chain 'mainnet'"),
        (lambda t: t + "\n[[broken", "cannot read config"),
        (lambda t: t + '\n[oracle]\nmerchant_payout_addresses = {shop = "0x0000000000000000000000000000000000000001"}\n',
         "'shop', which has no merchant_tokens entry"),
        (lambda t: t + '\n[oracle]\nmerchant_tokens = {shop = "t1"}\nmerchant_payout_addresses = {shop = "0x12"}\n',
         "payout address of merchant 'shop'"),
        (lambda t: t + '\n[oracle]\nmerchant_tokens = {shop = "same"}\nverifier_tokens = {vera = "same"}\n',
         "token must be non-empty and distinct"),
        (lambda t: t + '\n[oracle]\nauth_failure_limit = "twenty a minute"\n', "oracle.auth_failure_limit"),
        (lambda t: t + '\n[oracle]\ntrusted_proxies = ["10.0.0.0/33"]\n', "oracle.trusted_proxies"),
        (lambda t: t.replace("finality_depth = 3", 'finality_depth = 3\npreset = "polkadot"'),
         "chains.devnet.preset: Input should be 'polkadot-hub', 'kusama-hub'"),
        (lambda t: t.replace("finality_depth = 3", 'finality_depth = 3\npreset = "polkadot-hub"\nchain_id = 31337'),
         "chain_id = 31337 contradicts preset = 'polkadot-hub' (chain_id 420420419)"),
    ],
)
def test_bad_config_names_the_problem(tmp_path, mutate, expected):
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, mutate(GOOD)))
    assert expected in str(err.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_missing_contract_address_is_named(tmp_path):
    text = GOOD.replace('address = "0x5fbdb2315678afecb367f032d93f642f64180aa3"\n', "")
    s = load_settings(write(tmp_path, text))
    with pytest.raises(ConfigError, match=r"chains\.devnet\.contracts\.CarbonCredit: no address"):
        resolved_contracts(s.chains["devnet"], "devnet")


def test_missing_deployment_file_is_named(tmp_path):
    text = GOOD.replace("finality_depth = 3", 'finality_depth = 3\ndeployment = "deployments/none.json"')
    s = load_settings(write(tmp_path, text))
    with pytest.raises(ConfigError, match="deployments/none.json"):
        resolved_contracts(s.chains["devnet"], "devnet")


def test_deployment_fills_addresses(tmp_path):
    dep = tmp_path / "devnet.json"
    addr = "0x" + "ab" * 20
    dep.write_text(json.dumps({"chainId": 31337, "contracts": {n: {"address": addr, "startBlock": 7, "txHash": "0x" + "00" * 32}
                                                                for n in ("CarbonCredit", "Marketplace", "Escrow", "QRPayment", "IoTAnchor")}}))
    text = GOOD.replace("finality_depth = 3", f'finality_depth = 3\ndeployment = "{dep}"')
    s = load_settings(write(tmp_path, text))
    got = resolved_contracts(s.chains["devnet"], "devnet")
    assert set(got) == {"CarbonCredit", "Marketplace", "Escrow", "QRPayment", "IoTAnchor"}
    assert got["CarbonCredit"].start_block == 1  # explicit config wins over the file
    assert got["Escrow"].start_block == 7


def test_example_config_in_repo_is_valid(monkeypatch):
    root = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(root)
    s = load_settings(root / "carbonledger.toml")
    assert "devnet" in s.chains


def test_secrets_hidden_in_dump(tmp_path, monkeypatch):
    monkeypatch.setenv("CARBONLEDGER_ORACLE_SIGNER", json.dumps({"private_key": "0x" + "11" * 32}))
    s = load_settings(write(tmp_path, GOOD))
    assert "11" * 32 not in s.model_dump_json()
    assert "11" * 32 not in repr(s)
    assert s.oracle.signer.private_key.get_secret_value() == "0x" + "11" * 32


def test_whole_section_from_env_json(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CARBONLEDGER_CHAINS", '{"devnet": {"rpc_url": "http://anvil:8545", "finality_depth": 2}}')
    s = load_settings()
    assert s.chains["devnet"].finality_depth == 2 and str(s.chains["devnet"].rpc_url).startswith("http://anvil:8545")
    monkeypatch.setenv("CARBONLEDGER_CHAINS", '{"devnet": {"rpc_url": "http://anvil:8545", "finalityDepth": 2}}')
    with pytest.raises(ConfigError, match="finalityDepth: unknown key"):
        load_settings()


def test_config_command_hides_database_password(tmp_path, capsys, monkeypatch):
    from carbonledger.cli import main

    monkeypatch.delenv("CARBONLEDGER_DATABASE_URL", raising=False)

    text = GOOD.replace("postgresql://127.0.0.1:5432/carbonledger",
                        "postgresql://app:s3cr3t-pw@127.0.0.1:5432/carbonledger?sslmode=require&password=s3cr3t-q")
    assert main(["--config", str(write(tmp_path, text)), "config"]) == 0
    out = capsys.readouterr().out
    assert "s3cr3t" not in out
    dumped = json.loads(out)
    assert dumped["database"]["url"] == "postgresql://app:***@127.0.0.1:5432/carbonledger?sslmode=require&password=***"


def test_urls_with_credentials_stay_out_of_repr_and_config_output(tmp_path, monkeypatch, capsys):
    from carbonledger.cli import main
    from core.config import redact_url

    text = GOOD.replace("postgresql://127.0.0.1:5432/carbonledger", "postgresql://app:hunter2@db:5432/cl").replace(
        "http://127.0.0.1:8545", "https://eth.example.com/v2/sekritkey")
    path = write(tmp_path, text)
    s = load_settings(path)
    assert "hunter2" not in repr(s) and "sekritkey" not in repr(s)
    assert main(["--config", str(path), "config"]) == 0
    out = capsys.readouterr().out
    assert "hunter2" not in out and "sekritkey" not in out and "eth.example.com" in out
    assert redact_url("https://h.example/v2/key?x=1", path=True) == "https://h.example/***"


def test_oracle_secrets_stay_out_of_config_output(tmp_path, capsys):
    """The M-Pesa callback URL holds the callback secret; tokens are secrets too."""
    from carbonledger.cli import main

    text = GOOD + ('\n[oracle]\nmpesa_callback_secret = "cb-s3cr3t"\n'
                   'mpesa_callback_url = "https://oracle.example/webhooks/mpesa/cb-s3cr3t"\n'
                   'merchant_tokens = {shop = "tok-s3cr3t-1"}\nverifier_tokens = {vera = "tok-s3cr3t-2"}\n'
                   'operator_tokens = {ops = "tok-s3cr3t-3"}\n')
    path = write(tmp_path, text)
    assert "s3cr3t" not in repr(load_settings(path))
    assert main(["--config", str(path), "config"]) == 0
    out = capsys.readouterr().out
    assert "s3cr3t" not in out and json.loads(out)["oracle"]["mpesa_callback_url"] == "**********"


def test_mpesa_callback_url_must_reach_the_callback_route(tmp_path):
    """Daraja calls oracle.mpesa_callback_url; the oracle serves /webhooks/mpesa/<oracle.mpesa_callback_secret>. If
    they differ every callback gets 404, silently: a config error naming both keys and printing neither value. Given
    only the URL, the secret is taken from it (one value to keep right)."""
    url = 'mpesa_callback_url = "https://oracle.example/{path}"\n'
    for secret, path in (("cb-s3cr3t-a", "webhooks/mpesa/cb-s3cr3t-b"), ("cb-s3cr3t-a", "webhooks/mpesa/cb-s3cr3t-a/"),
                         ("cb-s3cr3t-a", "mpesa/cb-s3cr3t-a"), (None, "hooks/cb-s3cr3t-a")):
        text = GOOD + "\n[oracle]\n" + (f'mpesa_callback_secret = "{secret}"\n' if secret else "") + url.format(path=path)
        with pytest.raises(ConfigError) as err:
            load_settings(write(tmp_path, text))
        msg = str(err.value)
        assert "oracle.mpesa_callback_url" in msg and "oracle.mpesa_callback_secret" in msg, msg
        assert "s3cr3t" not in msg and "oracle.example" not in msg, msg
    ok = load_settings(write(tmp_path, GOOD + '\n[oracle]\nmpesa_callback_secret = "cb-s3cr3t-a"\n'
                            + url.format(path="webhooks/mpesa/cb-s3cr3t-a")))
    assert ok.oracle.mpesa_callback_secret.get_secret_value() == "cb-s3cr3t-a"
    derived = load_settings(write(tmp_path, GOOD + "\n[oracle]\n" + url.format(path="webhooks/mpesa/cb-s3cr3t-c")))
    assert derived.oracle.mpesa_callback_secret.get_secret_value() == "cb-s3cr3t-c"


def test_read_url_is_one_url_or_a_list_and_its_passwords_stay_hidden(tmp_path, capsys, monkeypatch):
    """database.read_url: a URL or a list (a JSON array in the environment); a bad one is named by its position and
    scheme only; `carbonledger config` shows it (and api.live_listen_url) without passwords."""
    from carbonledger.cli import main

    one = "postgresql://reader:r3ad-pw@replica-1:5432/cl"
    monkeypatch.setenv("CARBONLEDGER_DATABASE_READ_URL", one)
    assert load_settings().database.read_urls == [one]
    monkeypatch.setenv("CARBONLEDGER_DATABASE_READ_URL", json.dumps([one, "postgresql://replica-2/cl"]))
    s = load_settings()
    assert s.database.read_urls == [one, "postgresql://replica-2/cl"] and "r3ad-pw" not in repr(s)
    monkeypatch.setenv("CARBONLEDGER_DATABASE_READ_URL", json.dumps([one, "mysql://x:my-pw@h/db"]))
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "read_url #2 must start with postgresql://" in str(err.value) and "my-pw" not in str(err.value)
    monkeypatch.delenv("CARBONLEDGER_DATABASE_READ_URL")

    text = GOOD + f'\n[api]\nlive_listen_url = "postgresql://app:l1sten-pw@primary/cl"\n'
    text = text.replace("[database]\n", f'[database]\nread_url = ["{one}"]\n')
    assert main(["--config", str(write(tmp_path, text)), "config"]) == 0
    out = capsys.readouterr().out
    assert "r3ad-pw" not in out and "l1sten-pw" not in out
    dumped = json.loads(out)
    assert dumped["database"]["read_url"] == ["postgresql://reader:***@replica-1:5432/cl"]
