"""SIGTERM at any moment of a daemon's start-up is a clean stop: exit 0, no traceback, nothing left running.

The handler is installed before anything slow (imports, settings, database, RPC); the tests wait until the process
has it (SigCgt in /proc/<pid>/status) and then signal it at several points of its start-up, including while it is
still retrying a node that does not answer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.anvil import free_port
from core.devnet import DEVNET_KEYS

ROOT = Path(__file__).resolve().parents[2]
ADDRS = {n: "0x" + f"{i + 1:040x}" for i, n in enumerate(["CarbonCredit", "Marketplace", "Escrow", "QRPayment", "IoTAnchor"])}


def _env(db_url: str, rpc: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARBONLEDGER_")}
    cfg = Path(os.environ.get("TMPDIR", "/tmp")) / f"cl-sig-{os.getpid()}.toml"
    cfg.write_text("")
    env.update({
        "CARBONLEDGER_CONFIG": str(cfg),
        "CARBONLEDGER_DATABASE_URL": db_url,
        "CARBONLEDGER_CHAINS": json.dumps({"dev": {"rpc_url": rpc, "chain_id": 31337, "use_finalized_tag": False,
                                                   "contracts": {n: {"address": a} for n, a in ADDRS.items()}}}),
        "CARBONLEDGER_ORACLE_SIGNER": json.dumps({"private_key": DEVNET_KEYS[0]}),
        "CARBONLEDGER_ORACLE_PORT": str(free_port()),
        "CARBONLEDGER_API_PORT": str(free_port()),
    })
    return env


def _catches_sigterm(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    caught = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), 16)
    return bool(caught >> (signal.SIGTERM - 1) & 1)


# --wait: the daemons keep retrying the dead node (or database) instead of failing at once, so the signal always
# lands during start-up, whatever the machine's load
COMMANDS = {"index": ["index", "--no-progress", "--port", "-1", "--wait"], "oracle": ["oracle", "run", "--wait"],
            "serve": ["serve", "--wait"]}


@pytest.mark.parametrize("delay", [0.0, 0.4, 1.5])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_sigterm_during_start_up_exits_cleanly(command, delay, db_url):
    dead_rpc = f"http://127.0.0.1:{free_port()}"  # nothing listens: the daemons keep retrying it while starting
    proc = subprocess.Popen([sys.executable, "-m", "carbonledger.cli", *COMMANDS[command]], cwd=ROOT,
                            env=_env(db_url, dead_rpc), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not _catches_sigterm(proc.pid):
            assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
            assert time.monotonic() < deadline, "the SIGTERM handler was never installed"
            time.sleep(0.005)
        time.sleep(delay)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = err.decode(errors="replace")
    assert proc.returncode == 0, (proc.returncode, text[-3000:])
    assert "Traceback" not in text, text[-3000:]


def _postmaster_alive(data_dir: Path) -> bool:
    pidfile = data_dir / "postmaster.pid"
    if not pidfile.exists():
        return False
    try:
        os.kill(int(pidfile.read_text().split()[0]), 0)
    except (ProcessLookupError, ValueError):
        return False
    return True


def _embedded_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARBONLEDGER_")}
    (tmp_path / "empty.toml").write_text("")
    env.update({"CARBONLEDGER_CONFIG": str(tmp_path / "empty.toml"),
                "CARBONLEDGER_DATABASE_EMBEDDED_DIR": str(tmp_path / "pg"), "CARBONLEDGER_API_PORT": str(free_port())})
    return env


def _wait_dead(data_dir: Path, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while _postmaster_alive(data_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not _postmaster_alive(data_dir)


def test_sigterm_to_serve_stops_the_embedded_postgres_it_started(tmp_path):
    import httpx

    env = _embedded_env(tmp_path)
    migrate = subprocess.run([sys.executable, "-m", "carbonledger.cli", "migrate"], cwd=tmp_path, env=env,
                             capture_output=True, timeout=180)
    assert migrate.returncode == 0, migrate.stderr.decode()[-2000:]
    proc = subprocess.Popen([sys.executable, "-m", "carbonledger.cli", "serve"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        url = f"http://127.0.0.1:{env['CARBONLEDGER_API_PORT']}/health"
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1].decode()[-2000:]
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert _postmaster_alive(tmp_path / "pg")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and "Traceback" not in err.decode(), err.decode()[-2000:]
    assert _wait_dead(tmp_path / "pg"), "the embedded Postgres outlived the API that started it"


def test_a_stale_handle_of_a_killed_process_does_not_keep_the_embedded_postgres_alive(tmp_path):
    env = _embedded_env(tmp_path)
    migrate = [sys.executable, "-m", "carbonledger.cli", "migrate"]
    assert subprocess.run(migrate, cwd=tmp_path, env=env, capture_output=True, timeout=180).returncode == 0
    assert _wait_dead(tmp_path / "pg")
    # A process that used the server was SIGKILLed: its pid stays in pgserver's handle list.
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (tmp_path / "pg" / ".handle_pids.json").write_text(json.dumps([gone.pid]))
    r = subprocess.run(migrate, cwd=tmp_path, env=env, capture_output=True, timeout=180)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    assert _wait_dead(tmp_path / "pg"), "the embedded Postgres was left running behind a dead pid"


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


@pytest.mark.parametrize("when", ["starting", "serving"])
def test_workers_end_with_their_supervisor_even_a_sigkilled_one(db_url, when):
    """`serve --workers 2` whose supervisor is SIGKILLed (an OOM kill, a hard stop), while its workers are still
    starting or once they serve: its workers end too instead of living on as orphans that keep the port, so the API
    can be started again on it."""
    import socket

    from gqlapi.testing import Served

    api = Served(db_url, "--workers", "2")
    try:
        if when == "serving":
            api.wait_ready(timeout=120)
        deadline = time.monotonic() + 60
        workers: list[int] = []
        while len(workers) < 2 and time.monotonic() < deadline:  # uvicorn's spawn helper may sit in between
            workers = [c for p in [api.proc.pid, *_children(api.proc.pid)] for c in _children(p)
                       if "spawn_main" in open(f"/proc/{c}/cmdline").read()]
            time.sleep(0.1)
        assert len(workers) == 2, workers
        api.proc.kill()
        api.proc.wait(10)
        deadline = time.monotonic() + 60
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(w) for w in workers), "workers outlived their supervisor"
        with socket.socket() as s:  # the port is free again
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", int(api.base.rsplit(":", 1)[1])))
    finally:
        api.close()


def _listening_pids(port: int) -> dict[int, int]:
    """pid -> listening sockets of its own on `port` (a socket shared by several processes counts for none)."""
    import re

    out = subprocess.run(["ss", "-ltnpH", f"( sport = :{port} )"], capture_output=True, text=True).stdout
    owners = [re.findall(r"pid=(\d+)", line) for line in out.splitlines()]
    found: dict[int, int] = {}
    for pids in owners:
        if len(pids) == 1:
            found[int(pids[0])] = found.get(int(pids[0]), 0) + 1
    return found


def test_workers_listen_on_sockets_of_their_own_and_share_the_connections(db_url):
    """`serve --workers 2`: each worker (and one started again after a crash) has a listener of its own on the port
    (SO_REUSEPORT), so keep-alive connections opened together spread over both workers instead of all going to the
    one that accepts first."""
    import re
    import socket

    from gqlapi.testing import Served

    api = Served(db_url, "--workers", "2")
    port = int(api.base.rsplit(":", 1)[1])

    def wait_two(not_pid: int | None = None) -> dict[int, int]:
        deadline = time.monotonic() + 120
        while True:
            own = _listening_pids(port)
            if len(own) == 2 and not_pid not in own:
                return own
            assert time.monotonic() < deadline, f"listeners of their own: {own}"
            time.sleep(0.1)

    try:
        api.wait_ready(timeout=120)
        workers = wait_two()
        assert all(n == 1 for n in workers.values()) and api.proc.pid not in workers
        conns = [socket.create_connection(("127.0.0.1", port), timeout=60) for _ in range(64)]
        try:
            deadline = time.monotonic() + 60
            while True:  # every connection accepted by a worker (counted before uvicorn's 5 s idle close can begin)
                out = subprocess.run(["ss", "-tnpH", "state", "established", f"( sport = :{port} )"],
                                     capture_output=True, text=True).stdout
                per = {pid: len(re.findall(rf"pid={pid},", out)) for pid in workers}
                if sum(per.values()) == 64 or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            # by address hash: each worker gets 32 ± 4; fewer than 16 of 64 has a chance of ~2e-5
            assert sum(per.values()) == 64 and min(per.values()) >= 16, per
            for c in conns:  # one request on each: the connection is served, not just queued
                c.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            for c in conns:
                assert c.recv(4096).startswith(b"HTTP/1.1 200"), "a connection was not served"
        finally:
            for c in conns:
                c.close()
        victim = next(iter(workers))
        os.kill(victim, signal.SIGKILL)  # the supervisor starts another, which binds a listener of its own too
        again = wait_two(not_pid=victim)
        assert len(set(again) - set(workers)) == 1, (workers, again)
        assert api.wait_ready(timeout=60)
    finally:
        api.close()
