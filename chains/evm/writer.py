"""EvmWriter: the EVM implementation of `chains.base.ChainWriter` (EIP-1559, eth-account + coincurve signing).

Calldata is encoded with eth_abi from precomputed selectors (no web3 contract objects on the hot path). Every
node call goes through the raw `RpcClient`; batch helpers keep batches at 10 (anvil hangs on ~100 raw txs).
Broadcast errors are classified: `MaybeSent` (the node may hold or have mined it: "already known", "nonce too
low", "replacement underpriced", timeouts) vs `Rejected` (the node refused it for good).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from eth_abi import encode
import rlp
from eth_utils import keccak
from eth_utils import function_abi_to_4byte_selector, to_checksum_address

from core.secrets import PrivateKey
from chains.base import ChainWriter, MaybeSent, Rejected, TxRequest, TxState, TxStatus  # noqa: F401 - re-exported
from chains.evm.artifacts import abi, decode_error
from chains.rpc import RpcClient, RpcError, RpcTransportError

BATCH = 10  # raw transactions per JSON-RPC batch (anvil hangs on ~100)
READ_BATCH = 50  # read-only calls (estimates, receipts) per batch
_MAYBE_SENT = ("already known", "already imported", "known transaction", "nonce too low", "replacement transaction underpriced",
               "already in the pool", "alreadyknown")


@dataclass(frozen=True)
class Fees:
    max_fee: int
    priority_fee: int

    def bumped(self, pct: float = 12.5) -> Fees:
        """At least +pct% on both fields (nodes demand >= 10-12.5% to replace), rounded up, +1 wei."""
        mul = int(pct * 10)
        return Fees(self.max_fee * (1000 + mul) // 1000 + 1, self.priority_fee * (1000 + mul) // 1000 + 1)


@lru_cache(maxsize=None)
def _function(contract: str, function: str) -> tuple[bytes, tuple[str, ...]]:
    for item in abi(contract):
        if item.get("type") == "function" and item["name"] == function:
            from eth_utils.abi import collapse_if_tuple

            return function_abi_to_4byte_selector(item), tuple(collapse_if_tuple(i) for i in item["inputs"])
    raise ValueError(f"{contract} has no function {function!r}")


@lru_cache(maxsize=None)
def _outputs(contract: str, function: str) -> str:
    for item in abi(contract):
        if item.get("type") == "function" and item["name"] == function:
            return item["outputs"][0]["type"]
    raise ValueError(f"{contract} has no function {function!r}")


def _coerce(typ: str, value: Any) -> Any:
    """JSON-friendly intent args -> eth_abi values (big ints travel as decimal strings, bytes as 0x-hex)."""
    if typ.endswith("[]"):
        return [_coerce(typ[:-2], v) for v in value]
    if typ.startswith(("uint", "int")):
        if isinstance(value, bool) or isinstance(value, float):
            raise TypeError(f"{typ} needs an integer, got {value!r}")
        return int(value)
    if typ == "address":
        return to_checksum_address(value)
    if typ.startswith("bytes"):
        return bytes.fromhex(value[2:]) if isinstance(value, str) else bytes(value)
    return value


def encode_call(contract: str, function: str, args: Sequence[Any]) -> bytes:
    """Calldata (selector + ABI-encoded args); cached, as each write is encoded for its view, estimate and signing."""
    try:
        return _encode_cached(contract, function, tuple(args))
    except TypeError:  # unhashable args (lists): encode directly
        return _encode(contract, function, args)


@lru_cache(maxsize=8192)
def _encode_cached(contract: str, function: str, args: tuple[Any, ...]) -> bytes:
    return _encode(contract, function, args)


def _encode(contract: str, function: str, args: Sequence[Any]) -> bytes:
    selector, types = _function(contract, function)
    if len(args) != len(types):
        raise ValueError(f"{contract}.{function} takes {len(types)} arguments, got {len(args)}")
    return selector + encode(list(types), [_coerce(t, a) for t, a in zip(types, args)])


def describe_revert(err: RpcError) -> str:
    """A readable revert: the decoded custom error (`PaymentRefUsed(paymentRef='pi_1')`) or the node's message."""
    data = err.data.get("data") if isinstance(err.data, dict) else err.data
    if isinstance(data, str) and data.startswith("0x"):
        decoded = decode_error(data)
        if decoded is not None:
            name, args = decoded
            inner = ", ".join(f"{k}={v.hex() if isinstance(v, bytes) else v!r}" for k, v in args.items())
            return f"{name}({inner})"
    return err.message


def is_revert(err: RpcError) -> bool:
    return err.code == 3 or "revert" in err.message.lower()


class EvmWriter(ChainWriter):
    """Signs and sends for one key on one chain. `contracts` maps protocol names to addresses."""

    def __init__(self, chain: str, rpc: RpcClient, chain_id: int, key: PrivateKey, contracts: Mapping[str, str]) -> None:
        self.chain = chain
        self.rpc = rpc
        self.chain_id = chain_id
        self._key = key
        self._contracts = {n: to_checksum_address(a) for n, a in contracts.items()}

    def address(self) -> str:
        return self._key.address

    def to(self, request: TxRequest) -> str:
        try:
            return self._contracts[request.contract]
        except KeyError:
            raise ValueError(f"no address configured for contract {request.contract!r}") from None

    def _call_obj(self, request: TxRequest) -> dict[str, Any]:
        return {"from": self.address(), "to": self.to(request),
                "data": "0x" + encode_call(request.contract, request.function, request.args).hex(),
                "value": hex(request.value)}

    def next_nonce(self) -> int:
        return int(self.rpc.call("eth_getTransactionCount", [self.address(), "pending"]), 16)

    def mined_nonce(self) -> int:
        """Nonces below this are consumed on the canonical chain."""
        return int(self.rpc.call("eth_getTransactionCount", [self.address(), "latest"]), 16)

    def fees(self) -> Fees:
        block, tip = self.rpc.batch([("eth_getBlockByNumber", ["latest", False]), ("eth_maxPriorityFeePerGas", [])])
        base = int(block.get("baseFeePerGas") or "0x0", 16)
        tip_i = max(int(tip, 16), 1)
        return Fees(2 * base + tip_i, tip_i)

    def sign(self, request: TxRequest, nonce: int, fees: Mapping[str, int] | None = None) -> tuple[str, bytes]:
        """EIP-1559 tx, RLP-encoded here and signed by coincurve (RFC 6979, low s): byte-identical to eth-account's
        output (a unit test checks) at ~1/10 of its cost, which is most of the sender's CPU at 100+ tx/s."""
        fees = dict(fees or {})
        fields = [self.chain_id, nonce, fees["priority_fee"], fees["max_fee"], fees["gas"],
                  bytes.fromhex(self.to(request)[2:]), request.value,
                  encode_call(request.contract, request.function, request.args), []]
        sig = self._signing_key().sign_recoverable(keccak(b"\x02" + rlp.encode(fields)), hasher=None)
        raw = b"\x02" + rlp.encode(fields + [sig[64], int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big")])
        return "0x" + keccak(raw).hex(), raw

    def _signing_key(self) -> Any:
        import coincurve

        return coincurve.PrivateKey(self._key.reveal())  # built per call: the key lives only in PrivateKey

    def estimate_many(self, requests: Sequence[TxRequest]) -> list[tuple[int | None, str | None]]:
        """(gas, None) when the call would succeed, (None, decoded revert) when it would not; batched."""
        return self.views_and_estimates([], requests)[1]

    def call_views(self, calls: Sequence[TxRequest]) -> list[Any]:
        """eth_call each view at latest (first output decoded; None when the call failed); batched."""
        return self.views_and_estimates(calls, [])[0]

    def views_and_estimates(self, views: Sequence[TxRequest], requests: Sequence[TxRequest]
                            ) -> tuple[list[Any], list[tuple[int | None, str | None]]]:
        """Both in as few round trips as possible (raw batch items: one revert must not hide the other answers)."""
        from eth_abi import decode

        calls = [("eth_call", [self._call_obj(v), "latest"]) for v in views]
        calls += [("eth_estimateGas", [self._call_obj(r)]) for r in requests]
        items: list[dict[str, Any]] = []
        for i in range(0, len(calls), READ_BATCH):
            chunk = calls[i:i + READ_BATCH]
            payload = [{"jsonrpc": "2.0", "id": n, "method": m, "params": p} for n, (m, p) in enumerate(chunk)]
            by_id = {item.get("id"): item for item in self.rpc._send(payload)}
            if len(by_id) != len(chunk):
                raise RpcTransportError("batch response ids do not match")
            items.extend(by_id[n] for n in range(len(chunk)))
        values: list[Any] = []
        for v, item in zip(views, items[:len(views)]):
            res = item.get("result")
            values.append(decode([_outputs(v.contract, v.function)], bytes.fromhex(res[2:]))[0]
                          if isinstance(res, str) and len(res) > 2 else None)
        checks: list[tuple[int | None, str | None]] = []
        for item in items[len(views):]:
            if item.get("error"):
                e = item["error"]
                err = RpcError(int(e.get("code", -1)), str(e.get("message", "")), e.get("data"), "eth_estimateGas")
                if not is_revert(err):
                    raise err
                checks.append((None, describe_revert(err)))
            else:
                checks.append((int(item["result"], 16), None))
        return values, checks

    def precheck(self, request: TxRequest) -> str | None:
        return self.estimate_many([request])[0][1]

    def broadcast(self, raw: bytes) -> str:
        res = self.broadcast_many([raw])[0]
        if isinstance(res, Exception):
            raise res
        return res

    def broadcast_many(self, raws: Sequence[bytes]) -> list[str | Exception]:
        """Send raw txs in batches of 10; each result is the hash, MaybeSent or Rejected."""
        out: list[str | Exception] = []
        for i in range(0, len(raws), BATCH):
            chunk = raws[i:i + BATCH]
            payload = [{"jsonrpc": "2.0", "id": n, "method": "eth_sendRawTransaction", "params": ["0x" + r.hex()]}
                       for n, r in enumerate(chunk)]
            try:
                body = self.rpc._send(payload)
            except (RpcTransportError, RpcError) as exc:  # the node may have taken some or all of them
                out.extend(MaybeSent(str(exc)) for _ in chunk)
                continue
            by_id = {item.get("id"): item for item in body}
            for n in range(len(chunk)):
                item = by_id.get(n) or {}
                if item.get("error"):
                    msg = str(item["error"].get("message", ""))
                    low = msg.lower()
                    out.append(MaybeSent(msg) if any(s in low for s in _MAYBE_SENT) else Rejected(msg))
                elif "result" in item:
                    out.append(item["result"])
                else:
                    out.append(MaybeSent("no answer for this tx in the batch"))
        return out

    def receipts(self, hashes: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Receipts of the mined ones among `hashes` (batched)."""
        found: dict[str, dict[str, Any]] = {}
        for i in range(0, len(hashes), READ_BATCH):
            chunk = list(hashes[i:i + READ_BATCH])
            for h, r in zip(chunk, self.rpc.batch([("eth_getTransactionReceipt", [h]) for h in chunk])):
                if r is not None:
                    found[h] = r
        return found

    def block_receipts(self, number: int) -> list[dict[str, Any]]:
        return self.rpc.call("eth_getBlockReceipts", [hex(number)]) or []

    def revert_reason(self, request: TxRequest, block_number: int, tx_hash: str | None = None) -> str:
        """Name a mined revert's custom error: the node's call trace where it has one, else replay the call on the
        parent state, then on the block's state (best effort: several of our txs may share the block)."""
        if tx_hash:
            try:
                trace = self.rpc.call("debug_traceTransaction", [tx_hash, {"tracer": "callTracer"}])
                out = trace.get("output") if isinstance(trace, dict) else None
                if isinstance(out, str) and len(out) >= 10:
                    return describe_revert(RpcError(3, str(trace.get("error", "reverted")), out))
            except (RpcError, RpcTransportError):
                pass
        for block in (max(block_number - 1, 0), block_number):
            try:
                self.rpc.call("eth_call", [self._call_obj(request), hex(block)])
            except RpcError as err:
                return describe_revert(err)
        return "reverted (reason not recoverable)"

    def status(self, tx_hash: str) -> TxStatus:
        r = self.rpc.call("eth_getTransactionReceipt", [tx_hash])
        if r is None:
            tx = self.rpc.call("eth_getTransactionByHash", [tx_hash])
            return TxStatus(TxState.PENDING if tx else TxState.UNKNOWN, tx_hash)
        head = int(self.rpc.call("eth_blockNumber"), 16)
        bn = int(r["blockNumber"], 16)
        state = TxState.MINED if int(r["status"], 16) == 1 else TxState.REVERTED
        return TxStatus(state, tx_hash, bn, r["blockHash"], head - bn + 1)

    def balance(self) -> int:
        return int(self.rpc.call("eth_getBalance", [self.address(), "latest"]), 16)
