"""A small client for the Aptos fullnode REST API (`/v1`): JSON via orjson, BCS submissions, the ledger headers.

Node answers that are errors (`{message, error_code, vm_error_code}` with a 4xx/5xx status) raise `NodeError`
(an `RpcError`: the indexer backs off and retries); transport faults, 429 and 5xx other than 507 are retried here
a few times and then raise `RpcTransportError` ("maybe sent", for a submission). Every answer carries
`X-Aptos-Ledger-Version`: the client keeps the highest it saw (`ledger_version`), a free tip for the reader.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson

from chains.rpc import RpcError, RpcTransportError

BCS_SIGNED = "application/x.aptos.signed_transaction+bcs"
MAX_BODY = 32 * 1024 * 1024  # a 100-transaction page is well under this; anything bigger is refused


class NodeError(RpcError):
    """The fullnode answered an error body."""

    def __init__(self, status: int, error_code: str, message: str, vm_error_code: int | None, path: str) -> None:
        super().__init__(status, f"{error_code}: {message}", method=path)
        self.status, self.error_code, self.vm_error_code = status, error_code, vm_error_code
        self.node_message = message


class FullnodeClient:
    def __init__(self, url: str, *, timeout_s: float = 10.0, retries: int = 3) -> None:
        self.url = url.rstrip("/")
        self.retries = retries
        self.http = httpx.Client(base_url=self.url, timeout=timeout_s, headers={"Accept": "application/json"})
        self.ledger_version = -1
        self.chain_id: int | None = None

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, *, params: dict | None = None, body: bytes | None = None,
                content_type: str | None = None, retry: bool = True) -> tuple[int, Any]:
        headers = {"Content-Type": content_type} if content_type else None
        attempts = self.retries + 1 if retry else 1
        for attempt in range(attempts):
            try:
                with self.http.stream(method, path, params=params, content=body, headers=headers) as r:
                    if (r.status_code == 429 or r.status_code >= 500) and r.status_code != 507:
                        raise RpcTransportError(f"{method} {path}: HTTP {r.status_code}")
                    raw = bytearray()
                    for chunk in r.iter_bytes():  # bounded: a hostile or broken node cannot exhaust memory
                        raw += chunk
                        if len(raw) > MAX_BODY:
                            raise RpcError(-1, f"answer larger than {MAX_BODY} bytes", method=path)
                data = orjson.loads(raw) if raw else None
            except (httpx.TransportError, RpcTransportError, orjson.JSONDecodeError) as exc:
                if attempt + 1 >= attempts:
                    raise exc if isinstance(exc, RpcTransportError) else RpcTransportError(f"{method} {path}: {exc}") from exc
                time.sleep(min(2.0, 0.05 * 2 ** attempt))
                continue
            lv = r.headers.get("x-aptos-ledger-version")
            if lv and lv.isdigit():
                self.ledger_version = max(self.ledger_version, int(lv))
            cid = r.headers.get("x-aptos-chain-id")
            if cid and cid.isdigit():
                self.chain_id = int(cid)
            if r.status_code >= 400:
                d = data if isinstance(data, dict) else {}
                vm = d.get("vm_error_code")
                raise NodeError(r.status_code, str(d.get("error_code", "unknown")), str(d.get("message", ""))[:500],
                                vm if type(vm) is int else None, path)
            return r.status_code, data
        raise AssertionError("unreachable")

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None)[1]

    def post_json(self, path: str, doc: Any) -> Any:
        return self.request("POST", path, body=orjson.dumps(doc), content_type="application/json")[1]
