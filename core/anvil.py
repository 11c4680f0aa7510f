"""Start and stop anvil (npm `@foundry-rs/anvil`, pinned in package.json) on a free port.

Used by integration, reorg and load tests and by the benches. The binary ships inside the npm package, so
`npm ci` is the only install step.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def anvil_binary() -> str | None:
    """Path of the anvil binary: $ANVIL_BIN, node_modules (the pinned npm package), or PATH."""
    env = os.environ.get("ANVIL_BIN")
    if env:
        return env
    for cand in sorted(ROOT.glob("node_modules/@foundry-rs/anvil-*/bin/anvil")):
        if os.access(cand, os.X_OK):
            return str(cand)
    return shutil.which("anvil")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Anvil:
    """A private anvil process: `with Anvil() as a: a.url`."""

    def __init__(self, *, port: int | None = None, block_time: float | None = None, chain_id: int = 31337,
                 extra_args: tuple[str, ...] = ()) -> None:
        binary = anvil_binary()
        if binary is None:
            raise FileNotFoundError("anvil not found: run `npm ci` (package @foundry-rs/anvil) or set ANVIL_BIN")
        self.binary = binary
        self.port = port or free_port()
        self.chain_id = chain_id
        self.args = [binary, "--host", "127.0.0.1", "--port", str(self.port), "--chain-id", str(chain_id),
                     "--silent", "--accounts", "10", *extra_args]
        if block_time:
            self.args += ["--block-time", str(block_time)]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 20.0) -> Anvil:
        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"anvil exited with {self.proc.returncode}: {err.strip()[:500]}")
            try:
                r = httpx.post(self.url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}, timeout=1)
                if r.status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"anvil did not answer on {self.url} within {timeout_s}s")

    def rpc(self, method: str, params: list | None = None, timeout_s: float = 120.0) -> object:
        """One JSON-RPC call. The timeout is generous: set-up work on a loaded 2-core box is slow, not broken."""
        r = httpx.post(self.url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []},
                       timeout=timeout_s)
        body = r.json()
        if "error" in body:
            raise RuntimeError(f"{method}: {body['error']}")
        return body["result"]

    def mine(self, blocks: int, chunk: int = 200) -> None:
        """Mine `blocks` empty blocks in chunks (one anvil_mine of 3,000 took 36 s on a loaded machine)."""
        while blocks > 0:
            n = min(chunk, blocks)
            self.rpc("anvil_mine", [hex(n)])
            blocks -= n

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> Anvil:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
