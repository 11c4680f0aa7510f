"""A lean JSON-RPC client for the hot paths of every family (raw JSON via orjson, no web3 formatting; a method's
answer may have its own typed parser, e.g. eth_getLogs straight into msgspec structs, chains.evm.decode).

Cross-cutting concerns are middleware around the transport, as in web3.py: each middleware takes the next
`send(payload) -> response` function and returns a wrapped one. `RetryMiddleware` (tenacity) retries transport
faults (timeouts, connection errors, 429/5xx, truncated or non-JSON bodies); JSON-RPC errors are answers, not
faults, and are raised to the caller as `RpcError` (the caller decides, e.g. shrink a log range).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson
import urllib3
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from core.http import pool_for

log = logging.getLogger("carbonledger.rpc")

Send = Callable[[Any], Any]
Middleware = Callable[[Send], Send]


class RpcError(Exception):
    """The node answered with a JSON-RPC error object."""

    def __init__(self, code: int, message: str, data: Any = None, method: str = "") -> None:
        super().__init__(f"{method or 'rpc'}: {message} (code {code})")
        self.code, self.message, self.data, self.method = code, message, data, method


class RpcTransportError(Exception):
    """The request may not have reached the node, or its answer did not arrive intact."""


def retry_middleware(attempts: int = 6, max_wait_s: float = 4.0) -> Middleware:
    def wrap(send: Send) -> Send:
        def retrying(payload: Any) -> Any:
            for attempt in Retrying(
                retry=retry_if_exception_type(RpcTransportError),
                stop=stop_after_attempt(attempts + 1),
                wait=wait_exponential_jitter(multiplier=0.05, max=max_wait_s),
                reraise=True,
            ):
                with attempt:
                    if attempt.retry_state.attempt_number > 1:
                        log.debug("rpc retry", extra={"attempt": attempt.retry_state.attempt_number})
                    return send(payload)

        return retrying

    return wrap


def metrics_middleware(observe: Callable[[str, float, bool], None]) -> Middleware:
    """Calls observe(method, seconds, ok) per request (batch: method "batch")."""

    def wrap(send: Send) -> Send:
        def timed(payload: Any) -> Any:
            method = payload.get("method", "?") if isinstance(payload, dict) else "batch"
            t0 = time.perf_counter()
            ok = False
            try:
                out = send(payload)
                ok = True
                return out
            finally:
                observe(method, time.perf_counter() - t0, ok)

        return timed

    return wrap


class RpcClient:
    """Synchronous JSON-RPC over HTTP with a middleware chain. Safe to share between threads (a pool of
    connections, up to `maxsize` kept open)."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 10.0,
        retries: int = 6,
        middlewares: Sequence[Middleware] = (),
        maxsize: int = 16,
        results: Mapping[str, Callable[[bytes], Any]] | None = None,
    ) -> None:
        """`results`: method -> a parser of that method's whole answer body that returns its `result` in one typed
        pass, or None to leave the answer to the generic JSON path (which words errors and malformed answers)."""
        self.url = url
        self._http, self._target = pool_for(url, timeout_s, maxsize, {"content-type": "application/json"})
        self._ids = itertools.count(1)
        self._results = dict(results or {})
        send: Send = self._post
        for mw in reversed([retry_middleware(retries), *middlewares]):
            send = mw(send)
        self._send = send

    def _post(self, payload: Any) -> Any:
        try:
            resp = self._http.urlopen("POST", self._target, body=orjson.dumps(payload))
            content = resp.data
        except (urllib3.exceptions.HTTPError, OSError) as exc:  # the message names host and port, never the path
            raise RpcTransportError(f"{type(exc).__name__}: {exc}") from exc
        if resp.status == 429 or resp.status >= 500:
            raise RpcTransportError(f"HTTP {resp.status}")
        typed = self._results.get(payload.get("method")) if self._results and type(payload) is dict else None
        if typed is not None and resp.status == 200:
            result = typed(content)
            if result is not None:
                return {"result": result}
        try:
            body = orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            raise RpcTransportError(f"malformed JSON from node ({len(content)} bytes)") from exc
        if resp.status >= 400 and not isinstance(body, (dict, list)):
            raise RpcTransportError(f"HTTP {resp.status}")
        if isinstance(payload, list) and (not isinstance(body, list) or len(body) != len(payload)):
            raise RpcTransportError("incomplete batch response")
        if isinstance(payload, dict) and not isinstance(body, dict):
            raise RpcTransportError("unexpected response shape")
        return body

    def call(self, method: str, params: Sequence[Any] = ()) -> Any:
        """One request; returns `result` or raises RpcError."""
        body = self._send({"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)})
        return _result(body, method)

    def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Several requests in one HTTP round trip (keep batches small: anvil hangs on ~100 raw txs)."""
        if not calls:
            return []
        payload = [{"jsonrpc": "2.0", "id": next(self._ids), "method": m, "params": list(p)} for m, p in calls]
        body = self._send(payload)
        by_id = {item.get("id"): item for item in body if isinstance(item, dict)}
        if len(by_id) != len(payload):
            raise RpcTransportError("batch response ids do not match")
        return [_result(by_id[req["id"]], req["method"]) for req in payload]

    def close(self) -> None:
        self._http.clear()

    def __enter__(self) -> RpcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _result(body: dict[str, Any], method: str) -> Any:
    if "error" in body and body["error"] is not None:
        err = body["error"]
        raise RpcError(int(err.get("code", -1)), str(err.get("message", "")), err.get("data"), method)
    if "result" not in body:
        raise RpcTransportError(f"{method}: response has neither result nor error")
    return body["result"]
