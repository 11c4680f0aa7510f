"""EvmReader: the EVM implementation of `chains.base.ChainReader` over raw JSON-RPC.

Logs come from `eth_getLogs` filtered by the followed addresses, over an adaptive block range: a node that
answers "too many results"/"range too large" or times out makes the range shrink (halving, down to one block),
each success lets it grow back (doubling, up to `max_block_range`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from chains.base import Block, ChainEvent, ChainReader, OpenedReader, UndecodableLog, VerifySource, register_family
from chains.evm.decode import LogDecoder, RawLog, decode_block, decode_logs, logs_result, quantity, raw_log
from chains.rpc import RpcClient, RpcError, RpcTransportError

log = logging.getLogger("carbonledger.evm.reader")

# Substrings by which providers say "this getLogs range is too big" (geth, erigon, alchemy, infura, quicknode).
_TOO_BIG = ("too many", "range", "limit", "exceed", "query returned more than", "response size", "timeout")


class EvmReader(ChainReader):
    """Heads, blocks and decoded protocol events of one EVM chain."""

    def __init__(self, chain: str, rpc: RpcClient | str, contracts: Mapping[str, tuple[str, Sequence[Mapping[str, Any]]]],
                 *, use_finalized_tag: bool = True, max_block_range: int = 2000, timeout_s: float = 10.0,
                 retries: int = 6, markets: Sequence[tuple[str, str, Sequence[Mapping[str, Any]]]] = ()) -> None:
        """contracts: protocol contract name -> (address, abi); markets: (contract name, address, event abi) of
        existing carbon markets (chains.evm.markets)."""
        self.chain = chain
        self.rpc = rpc if isinstance(rpc, RpcClient) else RpcClient(rpc, timeout_s=timeout_s, retries=retries,
                                                                    results={"eth_getLogs": logs_result})
        self.decoder = LogDecoder(chain, contracts, markets)
        self.use_finalized_tag = use_finalized_tag
        self.max_block_range = max_block_range
        self.range_size = min(100, max_block_range)

    @classmethod
    def from_settings(cls, chain: str, settings: Any) -> EvmReader:
        """Build from a `ChainSettings` (addresses from config or the deployment file, ABIs from abis/)."""
        from chains.evm.artifacts import abi

        from chains.evm.deploy import resolved_contracts
        from chains.evm.markets import resolved_markets

        contracts = {name: (c.address, abi(name)) for name, c in resolved_contracts(settings, chain).items()}
        markets = [(name, address, events) for name, address, _, events in resolved_markets(settings, chain)]
        return cls(chain, str(settings.rpc_url).rstrip("/"), contracts, use_finalized_tag=settings.use_finalized_tag,
                   max_block_range=settings.max_block_range, timeout_s=settings.request_timeout_s,
                   retries=settings.retries, markets=markets)

    # ------------------------------------------------------------------ blocks

    @classmethod
    def open(cls, name: str, cs: Any) -> OpenedReader:
        """The reader, the deployed contracts' addresses and the earliest deploy block; the node's chain id must
        match `chain_id` when configured."""
        from chains.evm.deploy import resolved_contracts
        from chains.evm.markets import resolved_markets
        from core.config import ConfigError, redact_url

        cls.check_settings(name, cs)
        contracts, markets = resolved_contracts(cs, name), resolved_markets(cs, name)
        reader = cls.from_settings(name, cs)
        if cs.chain_id is not None and (got := reader.chain_id()) != cs.chain_id:
            key = f"chains.{name}.preset ({cs.preset})" if cs.preset else f"chains.{name}.chain_id"
            raise ConfigError(f"{key}: node at {redact_url(str(cs.rpc_url), path=True)} reports "
                              f"chain id {got}, config expects {cs.chain_id}")
        start = min([c.start_block for c in contracts.values()] + [m[2] for m in markets], default=0)
        return OpenedReader(reader, {n: c.address for n, c in contracts.items()}, start)

    @classmethod
    def verify_source(cls, name: str, settings: Any) -> VerifySource | None:
        """The protocol contracts' addresses and the earliest deploy block (None when they do not resolve here)."""
        from chains.evm.deploy import resolved_contracts
        from core.config import ConfigError

        try:
            got = resolved_contracts(settings, name)
        except ConfigError:
            return None
        return VerifySource("evm", {n: str(c.address) for n, c in got.items()},
                            min((c.start_block for c in got.values()), default=0))

    @classmethod
    def check_settings(cls, name: str, settings: Any) -> None:
        """Contract addresses (config or deployment file) and existing-market entries resolve."""
        from chains.evm.deploy import resolved_contracts
        from chains.evm.markets import resolved_markets

        resolved_contracts(settings, name)
        resolved_markets(settings, name)

    @classmethod
    def check_node(cls, name: str, settings: Any) -> int:
        """The node answers eth_chainId, matching `chain_id` when configured; returns the chain id."""
        from chains.preflight import expect_chain_id, rpc_client
        from core.preflight import OperatorError, first_line

        client, shown = rpc_client(settings)
        try:
            got = int(client.call("eth_chainId"), 16)
        except (RpcError, RpcTransportError, ValueError, TypeError) as exc:
            raise OperatorError(f"chain {name}: no JSON-RPC node answers at {shown} ({first_line(exc)})",
                                f"start the node, or fix chains.{name}.rpc_url") from None
        finally:
            client.close()
        return expect_chain_id(name, settings, shown, got)

    def chain_id(self) -> int:
        return int(self.rpc.call("eth_chainId"), 16)

    def _decode_block(self, raw: Any, what: str) -> Block:
        try:
            return decode_block(self.chain, raw)
        except ValueError as exc:  # a broken node answer is a node fault: retried like one, never trusted
            raise RpcError(-1, f"{what}: {exc}", method="eth_getBlockByNumber") from None

    def head(self) -> Block:
        return self._decode_block(self.rpc.call("eth_getBlockByNumber", ["latest", False]), "latest block")

    def finalized(self, head: Block, depth: int) -> int:
        if self.use_finalized_tag:
            try:
                raw = self.rpc.call("eth_getBlockByNumber", ["finalized", False])
                n = quantity(raw.get("number")) if isinstance(raw, dict) else None
                if n is not None:
                    return n
            except RpcError:
                pass  # node without the tag: fall back to depth
        return max(head.number - depth, -1)

    def block(self, number: int) -> Block | None:
        raw = self.rpc.call("eth_getBlockByNumber", [hex(number), False])
        if not raw:
            return None
        b = self._decode_block(raw, f"block {number}")
        if b.number != number:
            raise RpcError(-1, f"asked for block {number}, the node answered block {b.number}", method="eth_getBlockByNumber")
        return b

    def blocks(self, numbers: Sequence[int], chunk: int = 20) -> dict[int, Block]:
        """Several headers in small JSON-RPC batches; missing blocks are left out."""
        out: dict[int, Block] = {}
        nums = list(numbers)
        for i in range(0, len(nums), chunk):
            part = nums[i: i + chunk]
            for raw in self.rpc.batch([("eth_getBlockByNumber", [hex(n), False]) for n in part]):
                if raw:
                    b = self._decode_block(raw, "block")
                    out[b.number] = b
        return out

    # ------------------------------------------------------------------ events

    def _get_logs(self, params: dict[str, Any]) -> list[RawLog]:
        logs = self.rpc.call("eth_getLogs", [{"address": self.decoder.addresses, **params}])
        if type(logs) is list and logs and isinstance(logs[0], RawLog):
            return logs  # the typed pass (logs_result) took the answer: every item is one, checked as it was parsed
        if not isinstance(logs, list) or not all(isinstance(x, dict) for x in logs):
            raise RpcError(-1, "eth_getLogs answered something other than a list of log objects", method="eth_getLogs")
        return [raw_log(x) for x in logs]

    def raw_logs(self, from_block: int, to_block: int) -> list[RawLog]:
        """All logs of the followed contracts in [from, to], shrinking the request range where the node refuses."""
        out: list[RawLog] = []
        start = from_block
        while start <= to_block:
            end = min(to_block, start + self.range_size - 1)
            try:
                out.extend(self._get_logs({"fromBlock": hex(start), "toBlock": hex(end)}))
            except (RpcError, RpcTransportError) as exc:
                msg = str(exc).lower()
                if end > start and (isinstance(exc, RpcTransportError) or any(s in msg for s in _TOO_BIG)):
                    self.range_size = max(1, (end - start + 1) // 2)
                    log.info("getLogs range shrunk", extra={"chain": self.chain, "range": self.range_size, "error": str(exc)[:200]})
                    continue
                raise
            if end - start + 1 >= self.range_size:
                self.range_size = min(self.max_block_range, self.range_size * 2)
            start = end + 1
        return out

    def events(self, from_block: int, to_block: int) -> list[ChainEvent | UndecodableLog]:
        logs = self.raw_logs(from_block, to_block)
        missing = sorted({n for l in logs if quantity(l.blockTimestamp) is None
                          and (n := quantity(l.blockNumber)) is not None and from_block <= n <= to_block})
        stamps = {n: b.timestamp for n, b in self.blocks(missing).items()} if missing else {}
        return decode_logs(self.decoder, logs, stamps, fallback_block=from_block)

    def events_at(self, block: Block) -> list[ChainEvent | UndecodableLog]:
        # By hash: the node answers for exactly this block or errors, never for a sibling on another branch.
        logs = self._get_logs({"blockHash": block.hash})
        return decode_logs(self.decoder, logs, {block.number: block.timestamp}, fallback_block=block.number)


def register_evm() -> None:
    """Register the "evm" family: this reader with the oracle's chains.evm.writer.EvmWriter."""
    from chains.evm.writer import EvmWriter

    register_family("evm", EvmReader, EvmWriter)
