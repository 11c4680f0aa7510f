"""The README's by-hand block, run as written (bash, the default ports, the example config): the devnet, a deploy,
the embedded Postgres, then the indexer, the oracle and the API, which must all come up and agree."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
PORTS = (8545, 8080, 8081, 8082)


def _block() -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"By hand, against the embedded defaults[^\n]*\n\n```bash\n(.*?)```", text, re.S)
    assert m, "README has no by-hand block"
    return m.group(1)


def _free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=3)
    except httpx.HTTPError:
        return None


def test_the_readme_by_hand_block_runs_as_written(tmp_path):
    if not all(_free(p) for p in PORTS):
        pytest.skip(f"a default port ({PORTS}) is taken on this machine; the block uses them as written")
    shutil.copy(ROOT / "carbonledger.toml", tmp_path / "carbonledger.toml")
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARBONLEDGER_")}
    proc = subprocess.Popen(["bash", "-e", "-c", _block() + "\nwait\n"], cwd=tmp_path, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, proc.stdout.read().decode(errors="replace")[-4000:]
            oks = [(r := _get(f"http://127.0.0.1:{p}/health")) is not None and r.status_code == 200 for p in (8080, 8081, 8082)]
            meta = None
            if all(oks):
                r = httpx.post("http://127.0.0.1:8080/graphql", json={"query": "{ _meta { chain block { number } } }"},
                               timeout=10)
                meta = r.json().get("data", {}).get("_meta")
            if meta and meta[0]["chain"] == "devnet" and meta[0]["block"]["number"] >= 1:
                break
            assert time.monotonic() < deadline, (oks, meta)
            time.sleep(1)
        ready = _get("http://127.0.0.1:8082/ready")
        assert ready is not None and ready.json()["chains"]["devnet"]["problem"] is None
        assert (tmp_path / "deployments" / "devnet.json").exists()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    deadline = time.monotonic() + 60
    while not all(_free(p) for p in PORTS) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert all(_free(p) for p in PORTS), "something the block started is still listening"
    pidfile = tmp_path / ".carbonledger" / "pgdata" / "postmaster.pid"
    while pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not pidfile.exists(), "the embedded Postgres outlived the commands that started it"
