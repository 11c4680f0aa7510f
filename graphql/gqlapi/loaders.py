"""DataLoaders, one set per request: every relation resolves through one batched query per kind.

Keys carry the as-of block (None = current) so a time-travelling query never mixes versions; a batch groups its
keys by block and issues one query per distinct block (almost always one).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any

from strawberry.dataloader import DataLoader

from gqlapi.sql import INDEXED_CHAINS, asof, upto

Key = tuple[Any, ...]


def _grouped(fetch: Callable[[int | None, list[Key]], Awaitable[dict[Hashable, Any]]], default: Any) -> Callable:
    """Batch function: group keys by their last element (the block), one fetch per group."""

    async def load(keys: Sequence[Key]) -> list[Any]:
        groups: dict[int | None, list[Key]] = defaultdict(list)
        for k in keys:
            groups[k[-1]].append(k)
        found: dict[Hashable, Any] = {}
        for block, ks in groups.items():
            found.update(await fetch(block, list(dict.fromkeys(ks))))
        return [found.get(k, default() if callable(default) else default) for k in keys]

    return load


def _by_chain_and_id(keys: Sequence[Key], alias: str, id_col: str) -> tuple[str, list[Any]]:
    """The JOIN restricting `alias` to the keys' (chain, id) pairs, and its parameters (two arrays)."""
    join = (f"JOIN unnest(%s::text[], %s::numeric[]) AS k(chain, {id_col}) "
            f"ON {alias}.chain = k.chain AND {alias}.{id_col} = k.{id_col}")
    return join, [[k[0] for k in keys], [k[1] for k in keys]]


class Loaders:
    """batch: (chain, batch_id, block) -> row;
    order_history: (chain, order_id, block) -> [rows]; certificates_of: (chain | None, holder, block) -> [rows];
    provenance: (chain, certificate_id, block) -> [rows]."""

    _KINDS = {"batch": ("_batches", None), "order_history": ("_order_history", list),
              "certificates_of": ("_certificates_of", list), "provenance": ("_provenance", list)}

    def __init__(self, db: Any) -> None:
        self.db = db

    def __getattr__(self, name: str) -> DataLoader:
        """Each DataLoader is made on first use (most requests use none)."""
        kind = self._KINDS.get(name)
        if kind is None:
            raise AttributeError(name)
        loader = DataLoader(_grouped(getattr(self, kind[0]), kind[1]))
        setattr(self, name, loader)
        return loader

    async def _batches(self, block: int | None, keys: list[Key]) -> dict[Hashable, Any]:
        join, params = _by_chain_and_id(keys, "b", "batch_id")
        cond = asof("b", block, params)
        rows = await self.db.fetch(f"SELECT b.* FROM credit_batch b {join} WHERE {cond}", params)
        return {(r["chain"], int(r["batch_id"]), block): r for r in rows}

    async def _order_history(self, block: int | None, keys: list[Key]) -> dict[Hashable, Any]:
        join, params = _by_chain_and_id(keys, "e", "order_id")
        cond = upto("e", block, params)
        rows = await self.db.fetch(
            f"SELECT e.* FROM order_event e {join} WHERE {cond} ORDER BY e.block_number, e.log_index", params)
        out: dict[Hashable, list] = defaultdict(list)
        for r in rows:
            out[(r["chain"], int(r["order_id"]), block)].append(r)
        return out

    async def _certificates_of(self, block: int | None, keys: list[Key]) -> dict[Hashable, Any]:
        params: list[Any] = [[k[1] for k in keys]]
        cond = upto("r", block, params)
        chains = {k[0] for k in keys}
        in_chains = f"r.chain = {INDEXED_CHAINS}" if None in chains else "r.chain = ANY(%s::text[])"
        if None not in chains:
            params.append(sorted(chains))
        rows = await self.db.fetch(
            f"SELECT r.* FROM retirement r WHERE r.holder = ANY(%s::text[]) AND {cond} AND {in_chains} "
            "ORDER BY r.block_number, r.log_index",
            params,
        )
        out: dict[Hashable, list] = defaultdict(list)
        for k in keys:
            out[k] = [r for r in rows if r["holder"] == k[1] and (k[0] is None or r["chain"] == k[0])]
        return out

    async def _provenance(self, block: int | None, keys: list[Key]) -> dict[Hashable, Any]:
        from gqlapi.resolvers.provenance_sql import certificate_provenance

        rows = await certificate_provenance(self.db, [(k[0], k[1]) for k in keys], block)
        out: dict[Hashable, list] = defaultdict(list)
        for r in rows:
            out[(r["_chain"], int(r["_cert"]), block)].append(r)
        return out
