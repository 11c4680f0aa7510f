"""AptosReader: the Aptos implementation of `chains.base.ChainReader` over the fullnode REST API.

Module events have no event handle, so the reader scans `GET /v1/transactions?start=V&limit=N` by version and
advances by the rows each page returns (the node clamps `limit` to 100 and may answer fewer). The tip is the
`ledger_version` of `GET /v1` (and the `X-Aptos-Ledger-Version` header of every answer); the reader never asks
past it (the node answers 400). Versions below the node's `oldest_ledger_version` are pruned (410): indexing
starts at the configured `start_block` (a version), which the indexer checks against the node at start-up.

Aptos is final on commit: there are no reorgs, the finalized version is the tip, and the indexer's "block" is a
version: `Block(number=version, hash=transaction hash, parent_hash=hash of version - 1, timestamp)`, so the
cursor's continuity check still holds (each version's parent is the version under the cursor). Events are keyed
by (version, index in the transaction).
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from chains.aptos.client import FullnodeClient, NodeError
from chains.aptos.mapping import Follow, map_transaction
from chains.aptos.values import MoveValueError, address
from chains.base import (Block, ChainError, ChainEvent, ChainReader, OpenedReader, UndecodableLog, VerifySource,
                         register_family)
from chains.rpc import RpcError, RpcTransportError

log = logging.getLogger("carbonledger.aptos.reader")

PAGE = 100  # the node's maximum page size
ZERO_HASH = "0x" + "0" * 64
_HASH = re.compile(r"0x[0-9a-f]{64}\Z")
_U64 = re.compile(r"(0|[1-9][0-9]{0,19})\Z")


class Pruned(RpcError):
    """The node no longer holds the version asked for (410). Caught at start-up as a config error (start_block below
    the node's oldest version); met later (the node pruned past our cursor) it is a node fault the indexer logs and
    retries with backoff, as another backend behind the same URL may still hold it."""


def _u64(v: Any, what: str) -> int:
    if isinstance(v, str) and _U64.match(v) and int(v) < 1 << 64:
        return int(v)
    raise RpcError(-1, f"{what} is not a u64 string: {str(v)[:40]!r}", method="/transactions")


class AptosReader(ChainReader):
    """Versions, their hashes and the protocol events of one Aptos network."""

    def __init__(self, chain: str, client: FullnodeClient | str, follow: Follow, *, cache: int = 8192) -> None:
        self.chain = chain
        self.client = client if isinstance(client, FullnodeClient) else FullnodeClient(client)
        self.follow = follow
        self._seen: OrderedDict[int, tuple[str, int]] = OrderedDict()  # version -> (hash, timestamp s), recent
        self._cache = cache

    @classmethod
    def from_settings(cls, chain: str, settings: Any) -> AptosReader:
        """Build from a `ChainSettings` of family "aptos"."""
        client = FullnodeClient(str(settings.rpc_url).rstrip("/"), timeout_s=settings.request_timeout_s,
                                retries=settings.retries)
        return cls(chain, client, follow_from(settings))

    @classmethod
    def open(cls, name: str, cs: Any) -> OpenedReader:
        """The reader, the marketplace's escrow (the "Marketplace" address handlers compare against) and the start
        version; the node's chain id must match `chain_id` when configured, and `start_block` must not be pruned."""
        from core.config import ConfigError, redact_url

        reader = cls.from_settings(name, cs)
        doc = reader.index()
        shown = redact_url(str(cs.rpc_url), path=True)
        if cs.chain_id is not None and doc.get("chain_id") != cs.chain_id:
            raise ConfigError(f"chains.{name}.chain_id: node at {shown} reports chain id {doc.get('chain_id')}, "
                              f"config expects {cs.chain_id}")
        oldest = _u64(doc.get("oldest_ledger_version"), "oldest_ledger_version")
        if cs.start_block < oldest:
            raise ConfigError(f"chains.{name}.start_block: version {cs.start_block} is pruned on the node at {shown} "
                              f"(its oldest is {oldest}); start at or above it, or use an archive node")
        return OpenedReader(reader, {"Marketplace": reader.follow.escrow}, cs.start_block)

    @classmethod
    def verify_source(cls, name: str, settings: Any) -> VerifySource | None:
        """The package account names every module; the scan starts at the configured version."""
        if not settings.aptos_package:
            return None
        return VerifySource("aptos", {}, settings.start_block, settings.aptos_package)

    @classmethod
    def check_node(cls, name: str, settings: Any) -> int:
        """GET /v1 answers, with the configured chain id; returns it."""
        from chains.preflight import expect_chain_id
        from core.config import redact_url
        from core.preflight import OperatorError, first_line

        url = str(settings.rpc_url).rstrip("/")
        shown = redact_url(url, path=not url.startswith(("http://127.", "http://localhost")))
        client = FullnodeClient(url, timeout_s=min(settings.request_timeout_s, 5.0), retries=0)
        try:
            got = client.get("/v1")["chain_id"]
            if type(got) is not int:
                raise ValueError(f"chain_id {str(got)[:40]!r}")
        except (RpcError, RpcTransportError, ValueError, TypeError, KeyError) as exc:
            raise OperatorError(f"chain {name}: no Aptos fullnode answers at {shown} ({first_line(exc)})",
                                f"start the node, or fix chains.{name}.rpc_url") from None
        finally:
            client.close()
        return expect_chain_id(name, settings, shown, got)

    # ------------------------------------------------------------------ the ledger

    def index(self) -> dict[str, Any]:
        doc = self.client.get("/v1")
        if not isinstance(doc, dict):
            raise RpcError(-1, "GET /v1 did not answer an object", method="/v1")
        return doc

    def tip(self) -> int:
        return _u64(self.index().get("ledger_version"), "ledger_version")

    def oldest(self) -> int:
        return _u64(self.index().get("oldest_ledger_version"), "oldest_ledger_version")

    def chain_id(self) -> int:
        cid = self.index().get("chain_id")
        if type(cid) is not int:
            raise RpcError(-1, f"chain_id {cid!r} is not a number", method="/v1")
        return cid

    def page(self, start: int, limit: int) -> list[dict[str, Any]]:
        """Transactions from `start`, at most `limit` (<= 100); never asks past the tip."""
        if start > self.client.ledger_version and start > self.tip():
            return []
        try:
            rows = self.client.get("/v1/transactions", start=start, limit=min(limit, PAGE))
        except NodeError as exc:
            if exc.status == 410:
                raise Pruned(410, f"{self.chain}: version {start} is pruned on this node ({exc.node_message}); "
                             "start from a version the node holds (chains.<name>.start_block) or use an archive node",
                             method="/v1/transactions") from None
            raise
        if not isinstance(rows, list):
            raise RpcError(-1, "transactions page is not a list", method="/transactions")
        for i, tx in enumerate(rows):
            if not isinstance(tx, dict) or _u64(tx.get("version"), "version") != start + i:
                raise RpcError(-1, f"page from {start} is not contiguous at row {i}", method="/transactions")
            h = tx.get("hash")
            if not isinstance(h, str) or not _HASH.match(h):
                raise RpcError(-1, f"version {start + i}: hash {str(h)[:80]!r} is not 32 bytes", method="/transactions")
            self._remember(start + i, h, _u64(tx.get("timestamp", "0"), "timestamp") // 1_000_000)
        return rows

    def _remember(self, version: int, h: str, ts: int) -> None:
        self._seen[version] = (h, ts)
        self._seen.move_to_end(version)
        while len(self._seen) > self._cache:
            self._seen.popitem(last=False)

    def _hash_ts(self, version: int) -> tuple[str, int] | None:
        if version not in self._seen:
            self.page(version, 1)
        return self._seen.get(version)

    def head(self) -> Block:
        b = self.block(self.tip())
        if b is None:
            raise RpcError(-1, "the tip version is not available", method="/transactions")
        return b

    def finalized(self, head: Block, depth: int) -> int:
        return head.number  # final on commit

    def block(self, number: int) -> Block | None:
        if number > self.client.ledger_version and number > self.tip():
            return None
        if number - 1 not in self._seen or number not in self._seen:
            try:
                self.page(max(number - 1, 0), 2 if number else 1)
            except Pruned:
                if number == 0:
                    return None
                self.page(number, 1)  # its parent is pruned: the block itself may still be there
        got = self._seen.get(number)
        if got is None:
            return None
        parent = self._seen.get(number - 1, (ZERO_HASH, 0))[0] if number else ZERO_HASH
        return Block(self.chain, number, got[0], parent, got[1])

    # ------------------------------------------------------------------ events

    def _scan(self, a: int, b: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        v = a
        while v <= b:
            rows = self.page(v, b - v + 1)
            if not rows:
                raise RpcError(-1, f"no transactions from version {v} (tip {self.client.ledger_version})",
                               method="/transactions")
            out.extend(rows)
            v += len(rows)  # the node may answer fewer than asked: advance by what came
        return out

    def decode(self, rows: Sequence[dict[str, Any]]) -> list[ChainEvent | UndecodableLog]:
        out: list[ChainEvent | UndecodableLog] = []
        for tx in rows:
            if tx.get("type") != "user_transaction" or tx.get("success") is not True:
                continue  # block metadata/epilogue, state checkpoints, genesis, failed and unknown types
            try:
                out.extend(map_transaction(self.chain, tx, self.follow))
            except (MoveValueError, KeyError, ValueError, TypeError) as exc:
                v, h = int(tx["version"]), str(tx["hash"])
                out.append(UndecodableLog(self.chain, "Aptos", v, h, h, -1, f"transaction: {exc}"[:500]))
        return out

    def events(self, from_block: int, to_block: int) -> list[ChainEvent | UndecodableLog]:
        return self.decode(self._scan(from_block, to_block))

    def events_at(self, block: Block) -> list[ChainEvent | UndecodableLog]:
        rows = self._scan(block.number, block.number)
        if rows[0]["hash"] != block.hash:
            raise RpcError(-1, f"version {block.number} has another hash", method="/transactions")
        return self.decode(rows)


def follow_from(settings: Any) -> Follow:
    """The package address and followed fungible assets of a `ChainSettings` of family "aptos"."""
    try:
        pkg = address(settings.aptos_package)
        fa = {address(k): int(v) for k, v in settings.fa_batches.items()}
    except MoveValueError as exc:
        raise ChainError(f"aptos settings: {exc}") from None
    return Follow(pkg, fa)


def register_aptos() -> None:
    """Register the "aptos" family: this reader with chains.aptos.writer.AptosWriter."""
    from chains.aptos.writer import AptosWriter

    register_family("aptos", AptosReader, AptosWriter)
