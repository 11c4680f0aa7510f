"""Every command fails with one line — `carbonledger: <what failed> — <how to fix it>` — and a non-zero exit, never a
traceback (unless -v asks for it). Each case runs the real command as a subprocess."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.anvil import free_port
from core.devnet import DEVNET_KEYS
from tests.pg import with_database

ROOT = Path(__file__).resolve().parents[2]
ADDRS = {n: "0x" + f"{i + 1:040x}" for i, n in enumerate(["CarbonCredit", "Marketplace", "Escrow", "QRPayment", "IoTAnchor"])}


def _env(tmp_path: Path, db_url: str, rpc: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARBONLEDGER_")}
    (tmp_path / "empty.toml").write_text("")
    env.update({"CARBONLEDGER_CONFIG": str(tmp_path / "empty.toml"), "CARBONLEDGER_DATABASE_URL": db_url,
                "CARBONLEDGER_CHAINS": json.dumps({"dev": {"rpc_url": rpc, "chain_id": 31337, "use_finalized_tag": False,
                                                           "contracts": {n: {"address": a} for n, a in ADDRS.items()}}}),
                "CARBONLEDGER_SIGNER_KEY": DEVNET_KEYS[0], "CARBONLEDGER_ORACLE_PORT": str(free_port()),
                "CARBONLEDGER_API_PORT": str(free_port()), "CARBONLEDGER_INDEXER_PORT": str(free_port()), **extra})
    return env


def _run(env: dict[str, str], *args: str, timeout: float = 120) -> tuple[int, list[str], float]:
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "carbonledger.cli", *args], cwd=ROOT, env=env, capture_output=True,
                       timeout=timeout)
    err = p.stderr.decode(errors="replace")
    assert "Traceback" not in err, err[-3000:]
    return p.returncode, [line for line in err.splitlines() if line.strip()], time.monotonic() - t0


def _one_line(code: int, lines: list[str], *needles: str) -> str:
    mine = [line for line in lines if line.startswith("carbonledger: ")]
    assert code != 0, lines
    assert len(mine) == 1, lines
    assert " — " in mine[0], mine  # what failed — how to fix it
    for n in needles:
        assert n in mine[0], (n, mine[0])
    return mine[0]


@pytest.fixture()
def anvil_url(anvil):
    return anvil.url


def test_database_down_or_missing(tmp_path, db_url):
    closed = f"postgresql://postgres@127.0.0.1:{free_port()}/x"
    line = _one_line(*_run(_env(tmp_path, closed, "http://127.0.0.1:1"), "migrate")[:2], "cannot connect", "Postgres")
    assert "Traceback" not in line
    missing = with_database(db_url, "cl_no_such_database")
    _one_line(*_run(_env(tmp_path, missing, "http://127.0.0.1:1"), "migrate")[:2], "does not exist")


def test_index_and_serve_before_migrate(tmp_path, pg_factory, anvil_url):
    empty = pg_factory.fresh(migrated=False)
    try:
        env = _env(tmp_path, empty, anvil_url)
        _one_line(*_run(env, "index", "--no-progress")[:2], "no carbonledger schema", "carbonledger migrate")
        _one_line(*_run(env, "serve")[:2], "no carbonledger schema", "carbonledger migrate")
    finally:
        pg_factory.drop(empty)


def test_wrong_rpc_fails_fast(tmp_path, db_url):
    env = _env(tmp_path, db_url, f"http://127.0.0.1:{free_port()}")
    for cmd in (["index", "--no-progress"], ["oracle", "run"]):
        code, lines, took = _run(env, *cmd)
        _one_line(code, lines, "no JSON-RPC node answers", "chains.dev.rpc_url")
        assert took < 60, (cmd, took)  # one short attempt (it used to retry for 39 s, or forever), even when loaded


def test_wrong_chain_id(tmp_path, db_url, anvil_url):
    env = _env(tmp_path, db_url, anvil_url)
    chains = json.loads(env["CARBONLEDGER_CHAINS"])
    chains["dev"]["chain_id"] = 1
    env["CARBONLEDGER_CHAINS"] = json.dumps(chains)
    _one_line(*_run(env, "index", "--no-progress")[:2], "chain id 31337", "chains.dev.chain_id")


def test_a_network_preset_checks_the_node_is_that_network(tmp_path, db_url, anvil_url):
    """`preset = "westend-hub"` (Polkadot Hub's EVM on Westend) names chain id 420420421: a node that is another
    chain is refused with one line naming the preset; a node with that chain id is accepted."""
    from chains.evm.reader import EvmReader
    from core.anvil import Anvil
    from core.config import Settings

    env = _env(tmp_path, db_url, anvil_url)
    chains = json.loads(env["CARBONLEDGER_CHAINS"])
    for key in ("chain_id", "use_finalized_tag"):
        del chains["dev"][key]
    chains["dev"]["preset"] = "westend-hub"
    env["CARBONLEDGER_CHAINS"] = json.dumps(chains)
    _one_line(*_run(env, "index", "--no-progress")[:2], "chain id 31337", "expects 420420421 (preset westend-hub)",
              "chains.dev.preset")
    hub = Anvil(chain_id=420420421).start()
    try:
        cs = Settings(chains={"hub": {"preset": "westend-hub", "rpc_url": hub.url}}).chains["hub"]
        assert (cs.family, cs.following, cs.use_finalized_tag) == ("evm", "finalized", True)
        assert EvmReader.check_node("hub", cs) == 420420421
    finally:
        hub.stop()


def test_oracle_without_or_with_a_bad_key(tmp_path, db_url, anvil_url):
    env = _env(tmp_path, db_url, anvil_url)
    del env["CARBONLEDGER_SIGNER_KEY"]
    _one_line(*_run(env, "oracle", "run")[:2], "no signing key", "CARBONLEDGER_SIGNER_KEY")
    env["CARBONLEDGER_SIGNER_KEY"] = "0x1234"
    line = _one_line(*_run(env, "oracle", "run")[:2], "CARBONLEDGER_SIGNER_KEY")
    assert "0x1234" not in line  # not even a bad key is echoed


def test_ports_taken(tmp_path, db_url, anvil_url):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = str(s.getsockname()[1])
        env = _env(tmp_path, db_url, anvil_url, CARBONLEDGER_API_PORT=port, CARBONLEDGER_ORACLE_PORT=port)
        _one_line(*_run(env, "serve")[:2], port, "api.port")
        _one_line(*_run(env, "oracle", "run")[:2], port, "oracle.port")
        code, lines, took = _run(env, "demo", "--no-serve", "--api-port", port, "--database-url", db_url)
        _one_line(code, lines, port, "--api-port")
        assert took < 60 and not any("deployed" in x for x in lines)  # refused before anything was started


def test_verbose_adds_the_traceback(tmp_path):
    closed = f"postgresql://postgres@127.0.0.1:{free_port()}/x"
    p = subprocess.run([sys.executable, "-m", "carbonledger.cli", "migrate", "-v"], cwd=ROOT,
                       env=_env(tmp_path, closed, "http://127.0.0.1:1"), capture_output=True, timeout=120)
    err = p.stderr.decode()
    assert p.returncode == 1 and "Traceback" in err and "carbonledger: cannot connect" in err


def test_a_new_devnet_behind_an_old_name_is_refused_until_reset(db_url):
    """The in-memory devnet restarted: same chain name, same contract addresses, another chain. The indexer must
    not take it for a deep reorg; it names the reset command, which makes a fresh index possible."""
    from web3 import Web3

    from core.anvil import Anvil
    from indexer.runner import run_once
    from tests.integration.scenario import deploy, index_env, indexed_state, run_scenario, settings_for

    with Anvil() as first:
        w3 = Web3(Web3.HTTPProvider(first.url))
        dep = deploy(w3)
        run_scenario(w3, dep, actions=20, seed=5)
        assert run_once(settings_for(first.url, dep, db_url), db_url=db_url) == 0
        genesis = w3.eth.get_block(0)
    # anvil stamps its genesis with the wall-clock second: a restart within the same second is the same genesis
    # block, which no one can tell from the old chain (a warm test run got there in under a second). Another second.
    with Anvil(extra_args=("--timestamp", str(genesis.timestamp + 1))) as second:
        w3 = Web3(Web3.HTTPProvider(second.url))
        assert w3.eth.get_block(0).hash != genesis.hash
        dep2 = deploy(w3)  # the same deployer and nonces: the same addresses on a different chain
        assert {n: c.address for n, c in dep2.contracts.items()} == {n: c.address for n, c in dep.contracts.items()}
        settings = settings_for(second.url, dep2, db_url)
        env = index_env(settings)
        line = _one_line(*_run(env, "index", "--no-progress", "--port", "-1")[:2], "genesis",
                         "carbonledger reset --chain dev")
        assert "holds chain dev" in line
        code, lines, _ = _run(env, "reset", "--chain", "dev")  # no terminal: confirmation is required
        _one_line(code, lines, "--yes")
        p = subprocess.run([sys.executable, "-m", "carbonledger.cli", "reset", "--chain", "dev", "--yes"], cwd=ROOT,
                           env=env, capture_output=True, timeout=120)
        assert p.returncode == 0, p.stderr.decode()[-2000:]
        assert indexed_state(db_url, "dev").batches == {}
        run_scenario(w3, dep2, actions=10, seed=6)
        assert run_once(settings, db_url=db_url) == 0
        assert indexed_state(db_url, "dev").batches


def test_a_database_password_never_reaches_the_error_line(tmp_path):
    for password in ("s3cr%zzet", "hunter2secret"):  # a bad %-escape makes libpq quote it back
        url = f"postgresql://postgres:{password}@127.0.0.1:{free_port()}/x"
        code, lines, _ = _run(_env(tmp_path, url, "http://127.0.0.1:1"), "migrate")
        line = _one_line(code, lines)
        assert password not in line and "s3cr" not in line and "hunter2" not in line, line
