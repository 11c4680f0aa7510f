"""SubstrateReader: the Substrate implementation of `chains.base.ChainReader` over raw JSON-RPC (HTTP).

Per block: the hash (`chain_getBlockHash`), the header, and one storage query (`state_queryStorageAt`) that
brings `System.Events`, `Timestamp.Now` and `System.LastRuntimeUpgrade` (the spec version that executed the
block) together; the body (`chain_getBlock`) only for blocks holding Assets or Remarked events. Calls go in small
JSON-RPC batches. Events decode with the metadata of the block's own runtime (chains.substrate.runtime), then
map onto neutral events (chains.substrate.mapping). Heads: `chain_getBlockHash()` (best) and
`chain_getFinalizedHead` (GRANDPA) when `use_finalized_tag`; the indexer follows the finalized head by default
on this family (`follow = "finalized"`), or the best head with reorgs undone (`follow = "best"`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from chains.base import Block, ChainEvent, ChainReader, OpenedReader, UndecodableLog, register_family
from chains.rpc import RpcClient, RpcError, RpcTransportError
from chains.substrate.mapping import Follow, follow_from, map_block, wanted
from chains.substrate.runtime import EVENTS_KEY, NOW_KEY, UPGRADE_KEY, Runtime, Runtimes, compact_u32

log = logging.getLogger("carbonledger.substrate.reader")


def _hash(v: Any, what: str) -> str:
    if isinstance(v, str) and len(v) == 66 and v[:2] == "0x":
        try:
            int(v[2:], 16)
            return v.lower()
        except ValueError:
            pass
    raise RpcError(-1, f"{what}: not a 32-byte hash: {str(v)[:80]!r}", method="chain_getHeader")


def _number(v: Any) -> int:
    if type(v) is int and v >= 0:
        return v
    if isinstance(v, str) and v[:2] == "0x" and 2 < len(v) <= 18:
        try:
            return int(v, 16)
        except ValueError:
            pass
    raise RpcError(-1, f"header number {str(v)[:40]!r} is not a quantity", method="chain_getHeader")


def _u64_le(v: Any) -> int:
    """Timestamp.Now (u64 milliseconds, little endian); 0 where the block has none (genesis)."""
    if v is None:
        return 0
    try:
        raw = bytes.fromhex(v[2:]) if isinstance(v, str) and v[:2] == "0x" else None
    except ValueError:
        raw = None
    if raw is None or len(raw) != 8:  # a broken node answer is a node fault: retried, never trusted
        raise RpcError(-1, f"Timestamp.Now is not a u64: {str(v)[:40]!r}", method="state_queryStorageAt")
    return int.from_bytes(raw, "little")


class SubstrateReader(ChainReader):
    """Heads, blocks and decoded protocol events of one Substrate chain."""

    def __init__(self, chain: str, rpc: RpcClient | str, follow: Follow, *, use_finalized_tag: bool = True,
                 timeout_s: float = 10.0, retries: int = 6, batch: int = 25) -> None:
        self.chain = chain
        self.rpc = rpc if isinstance(rpc, RpcClient) else RpcClient(rpc, timeout_s=timeout_s, retries=retries)
        self.follow = follow
        self.use_finalized_tag = use_finalized_tag
        self.batch = batch
        self.runtimes = Runtimes(lambda h: self.rpc.call("state_getMetadata", [h]))

    @classmethod
    def from_settings(cls, chain: str, settings: Any) -> SubstrateReader:
        """Build from a `ChainSettings` of family "substrate"."""
        return cls(chain, str(settings.rpc_url).rstrip("/"), follow_from(settings, chain),
                   use_finalized_tag=settings.use_finalized_tag, timeout_s=settings.request_timeout_s,
                   retries=settings.retries)

    @classmethod
    def open(cls, name: str, cs: Any) -> OpenedReader:
        """The reader and the start block; the runtime's SS58 prefix must match `ss58_format` when configured."""
        from core.config import ConfigError, redact_url

        cls.check_settings(name, cs)
        reader = cls.from_settings(name, cs)
        if cs.ss58_format is not None and (got := reader.chain_id()) != cs.ss58_format:
            raise ConfigError(f"chains.{name}.ss58_format: node at {redact_url(str(cs.rpc_url), path=True)} runs a "
                              f"runtime with SS58 prefix {got}, config expects {cs.ss58_format}")
        if cs.ink_contracts and not reader.best_runtime().has_event("Contracts", "ContractEmitted"):
            raise ConfigError(f"chains.{name}.ink_contracts: the node's runtime has no contracts pallet "
                              "(Contracts.ContractEmitted), so no ink! contract runs on this chain")
        return OpenedReader(reader, {}, cs.start_block)

    @classmethod
    def check_settings(cls, name: str, settings: Any) -> None:
        """The accounts the settings name (retirement_account, anchor_senders) parse."""
        from chains.substrate.accounts import check_settings

        check_settings(settings, name)

    @classmethod
    def check_node(cls, name: str, settings: Any) -> int:
        """The node answers its genesis hash (the SS58 prefix is checked when the reader's runtime is loaded)."""
        from chains.preflight import rpc_client
        from core.preflight import OperatorError, first_line

        client, shown = rpc_client(settings)
        try:
            genesis = client.call("chain_getBlockHash", [0])
            if not isinstance(genesis, str):
                raise ValueError(f"chain_getBlockHash(0) answered {str(genesis)[:60]!r}")
        except (RpcError, RpcTransportError, ValueError, TypeError) as exc:
            raise OperatorError(f"chain {name}: no JSON-RPC node answers at {shown} ({first_line(exc)})",
                                f"start the node, or fix chains.{name}.rpc_url") from None
        finally:
            client.close()
        return 0

    # ------------------------------------------------------------------ blocks

    def _calls(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        out: list[Any] = []
        for i in range(0, len(calls), self.batch):
            out.extend(self.rpc.batch(calls[i: i + self.batch]))
        return out

    def _headers(self, hashes: Sequence[str], *, storage: bool) -> list[tuple[dict, dict[str, str | None]]]:
        """(header, storage key -> value) per hash; storage holds Timestamp.Now, and with `storage` the events and
        the runtime version too."""
        keys = [NOW_KEY, EVENTS_KEY, UPGRADE_KEY] if storage else [NOW_KEY]
        calls: list[tuple[str, list[Any]]] = []
        for h in hashes:
            calls += [("chain_getHeader", [h]), ("state_queryStorageAt", [keys, h])]
        res = self._calls(calls)
        out = []
        for k, h in enumerate(hashes):
            header, st = res[2 * k], res[2 * k + 1]
            if not isinstance(header, dict):
                raise RpcError(-1, f"block {h[:10]} not available", method="chain_getHeader")
            values: dict[str, str | None] = {key: None for key in keys}
            if isinstance(st, list) and st and isinstance(st[0], dict):
                for change in st[0].get("changes") or ():
                    if isinstance(change, list) and len(change) == 2 and change[0] in values:
                        values[change[0]] = change[1]
            out.append((header, values))
        return out

    def _block(self, h: str, header: dict, values: dict[str, str | None]) -> Block:
        return Block(self.chain, _number(header.get("number")), h, _hash(header.get("parentHash"), "parentHash"),
                     _u64_le(values.get(NOW_KEY)) // 1000)

    def best_runtime(self) -> Runtime:
        """The runtime of the best block (its metadata says which pallets and events the chain has)."""
        h = _hash(self.rpc.call("chain_getBlockHash", []), "best hash")
        (header, values), = self._headers([h], storage=True)
        return self._runtime(h, header, values)

    def chain_id(self) -> int:
        """The runtime's SS58 prefix (Substrate has no chain id; the genesis hash identifies the chain)."""
        return int(self.best_runtime().constant("System", "SS58Prefix"))

    def head(self) -> Block:
        h = _hash(self.rpc.call("chain_getBlockHash", []), "best hash")
        (header, values), = self._headers([h], storage=False)
        return self._block(h, header, values)

    def finalized(self, head: Block, depth: int) -> int:
        if self.use_finalized_tag:
            h = _hash(self.rpc.call("chain_getFinalizedHead", []), "finalized hash")
            header = self.rpc.call("chain_getHeader", [h])
            if isinstance(header, dict):
                return min(_number(header.get("number")), head.number)
        return max(head.number - depth, -1)

    def block(self, number: int) -> Block | None:
        h = self.rpc.call("chain_getBlockHash", [number])
        if h is None:
            return None
        h = _hash(h, f"hash of block {number}")
        (header, values), = self._headers([h], storage=False)
        b = self._block(h, header, values)
        if b.number != number:
            raise RpcError(-1, f"asked for block {number}, the node answered block {b.number}", method="chain_getHeader")
        return b

    # ------------------------------------------------------------------ events

    def _runtime(self, h: str, header: dict, values: dict[str, str | None]) -> Runtime:
        parent = _hash(header.get("parentHash"), "parentHash")
        at = h if _number(header.get("number")) == 0 else parent  # the code that executed the block
        upgrade = values.get(UPGRADE_KEY)
        try:
            if upgrade:
                version = compact_u32(bytes.fromhex(upgrade[2:]))
            else:  # a chain that never recorded an upgrade: ask the node which runtime ran the block
                version = int(self.rpc.call("state_getRuntimeVersion", [at])["specVersion"])
        except (ValueError, TypeError, KeyError) as exc:
            raise RpcError(-1, f"runtime version of block {h[:10]}: {exc}", method="state_getRuntimeVersion") from None
        return self.runtimes.get(version, at)

    def _decode(self, blocks: list[tuple[str, dict, dict[str, str | None]]]) -> list[ChainEvent | UndecodableLog]:
        decoded: list[tuple[Block, Runtime | None, list[dict[str, Any]], str | None]] = []
        for h, header, values in blocks:
            blk = self._block(h, header, values)
            rt = self._runtime(h, header, values)
            try:
                raw = values.get(EVENTS_KEY)
                records = rt.decode_events(raw) if raw else []
                decoded.append((blk, rt, records, None))
            except ValueError as exc:
                decoded.append((blk, rt, [], str(exc)))
        need = [blk.hash for blk, _, records, _ in decoded if wanted(records, self.follow)]
        bodies = dict(zip(need, self._calls([("chain_getBlock", [h]) for h in need])))
        out: list[ChainEvent | UndecodableLog] = []
        for blk, rt, records, problem in decoded:
            if problem is not None:
                log.warning("undecodable events", extra={"chain": self.chain, "block": blk.number, "error": problem})
                out.append(UndecodableLog(self.chain, "System", blk.number, blk.hash, blk.hash, -1, problem[:500]))
                continue
            body = bodies.get(blk.hash)
            if blk.hash in bodies and not (isinstance(body, dict) and isinstance(body.get("block"), dict)):
                raise RpcError(-1, f"body of block {blk.number} not available", method="chain_getBlock")
            exts = body["block"].get("extrinsics") if body else None
            out.extend(map_block(self.chain, blk, records, exts if isinstance(exts, list) else None, rt, self.follow))
        return out

    def events(self, from_block: int, to_block: int) -> list[ChainEvent | UndecodableLog]:
        numbers = list(range(from_block, to_block + 1))
        hashes = self._calls([("chain_getBlockHash", [n]) for n in numbers])
        if any(h is None for h in hashes):
            missing = numbers[[h is None for h in hashes].index(True)]
            raise RpcError(-1, f"block {missing} not available", method="chain_getBlockHash")
        hashes = [_hash(h, "block hash") for h in hashes]
        headers = self._headers(hashes, storage=True)
        for n, (header, _) in zip(numbers, headers):
            if _number(header.get("number")) != n:
                raise RpcError(-1, f"asked for block {n}, the node answered another", method="chain_getHeader")
        return self._decode([(h, header, values) for h, (header, values) in zip(hashes, headers)])

    def events_at(self, block: Block) -> list[ChainEvent | UndecodableLog]:
        (header, values), = self._headers([block.hash], storage=True)
        return self._decode([(block.hash, header, values)])


def register_substrate() -> None:
    """Register the "substrate" family: this reader with chains.substrate.writer.SubstrateWriter."""
    from chains.substrate.writer import SubstrateWriter

    register_family("substrate", SubstrateReader, SubstrateWriter)
