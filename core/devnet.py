"""`carbonledger devnet`: an in-process eth-tester (py-evm) chain served over JSON-RPC on 127.0.0.1.

The embedded default for the demo and quick tests: no node to install. Accounts are anvil's well-known devnet
keys (public, test-only), funded at genesis, so the same keys work against anvil and this devnet. Every
transaction is mined at once. Speaks plain JSON-RPC (single and batch); web3's eth-tester formatters translate
between the wire format and eth-tester's Python API.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

import orjson
from eth_account import Account
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from web3 import EthereumTesterProvider
from web3.providers.eth_tester.middleware import request_formatters, result_formatters

from core.service import ThreadedServer

log = logging.getLogger("carbonledger.devnet")

# anvil / hardhat default mnemonic ("test test ... junk"), accounts 0-4. Public knowledge; never use on a real chain.
DEVNET_KEYS = (
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
)
DEVNET_ACCOUNTS = tuple(Account.from_key(k).address for k in DEVNET_KEYS)
_FUNDING = 10_000 * 10**18


def _wire(value: Any, key: str = "") -> Any:
    """Python values from eth-tester -> JSON-RPC wire values (QUANTITY / DATA hex)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return "0x" + format(value, "0512x") if key == "logsBloom" else hex(value)
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if isinstance(value, dict):
        return {k: _wire(v, k) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_wire(v) for v in value]
    return value


class Devnet:
    """An eth-tester chain with a JSON-RPC dispatcher (thread-safe: py-evm is not)."""

    def __init__(self) -> None:
        self.provider = EthereumTesterProvider()
        self.tester = self.provider.ethereum_tester
        self._lock = threading.Lock()
        funder = self._caller = self.tester.get_accounts()[0]
        for key in DEVNET_KEYS:
            addr = self.tester.add_account(key)
            self.tester.send_transaction({"from": funder, "to": addr, "value": _FUNDING, "gas": 21000})
        self.chain_id = int(self.provider.make_request("eth_chainId", [])["result"])

    def handle(self, method: str, params: list[Any]) -> dict[str, Any]:
        """One JSON-RPC call -> {"result": ...} or {"error": {...}}."""
        try:
            with self._lock:
                if method == "eth_accounts":
                    return {"result": list(DEVNET_ACCOUNTS)}
                if method in ("eth_call", "eth_estimateGas") and params and isinstance(params[0], dict):
                    # real nodes need no `from` here; eth-tester insists on one that can pay for the gas
                    params = [{"from": self._caller, **params[0]}, *params[1:]]
                fmt: Callable[[Any], Any] | None = request_formatters.get(method)  # type: ignore[assignment]
                if fmt is not None:
                    params = fmt(params)
                resp = self.provider.make_request(method, params)  # type: ignore[arg-type]
            if "error" in resp:
                err = resp["error"]
                if isinstance(err, str):
                    err = {"code": -32000, "message": err}
                return {"error": {k: (v if k in ("code", "message") else _wire(v)) for k, v in err.items()}}
            result = resp.get("result")
            out_fmt = result_formatters.get(method)  # type: ignore[union-attr]
            if out_fmt is not None and result is not None:
                result = out_fmt(result)
            return {"result": _wire(result)}
        except NotImplementedError:
            return {"error": {"code": -32601, "message": f"method {method} not supported by the devnet"}}
        except Exception as exc:  # a revert or a bad argument is the caller's answer, not a server crash
            message = str(exc) or type(exc).__name__
            data = getattr(exc, "data", None)
            err: dict[str, Any] = {"code": 3 if "revert" in message.lower() else -32000, "message": message}
            if isinstance(data, (bytes, str)):
                err["data"] = _wire(data)
            return {"error": err}


def make_app(devnet: Devnet) -> Starlette:
    async def rpc(request: Request) -> Response:
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return Response(orjson.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse error"}}), media_type="application/json")

        def one(req: Any) -> dict[str, Any]:
            if not isinstance(req, dict) or "method" not in req:
                return {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "invalid request"}}
            params = req.get("params")
            if params is not None and not isinstance(params, list):  # by-position only (what every client sends)
                return {"jsonrpc": "2.0", "id": req.get("id"), "error": {"code": -32602, "message": "params must be an array"}}
            out = devnet.handle(str(req["method"]), params or [])
            return {"jsonrpc": "2.0", "id": req.get("id"), **out}

        loop = asyncio.get_running_loop()
        if isinstance(body, list):
            result: Any = [await loop.run_in_executor(None, one, r) for r in body]
        else:
            result = await loop.run_in_executor(None, one, body)
        return Response(orjson.dumps(result), media_type="application/json")

    return Starlette(routes=[Route("/", rpc, methods=["POST"])])


class DevnetServer(ThreadedServer):
    """The devnet's JSON-RPC app on uvicorn in a background thread (for the demo and tests)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.devnet = Devnet()
        super().__init__(make_app(self.devnet), host, port, name="devnet")
