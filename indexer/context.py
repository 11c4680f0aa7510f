"""What handlers see: the current derived state (read-through cache) and buffers for one transaction.

A Context covers the blocks of one database transaction (a backfill range or one head block). Reads go to an
overlay of this transaction's changes, then to the committed cache; writes go to the overlay and to a per-entity
version list, so an entity changed in several blocks of a range still gets one version per block. The overlay
is merged into the cache only after the transaction commits; a failed transaction just drops it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chains.base import Block, ChainEvent, UndecodableLog
from indexer.tables import EVENTS, VERSIONED

Key = tuple[Any, ...]
Row = dict[str, Any]


class StateCache:
    """The committed current version of versioned entities of one chain: table -> key -> state (None = absent).

    A table with at most `limit` current rows is loaded whole ("complete": a miss means the entity does not
    exist). Beyond that it works lazily: a miss reads that one row from Postgres, and the table's cache is
    dropped whenever it outgrows `limit`. Memory stays bounded either way; the common case pays no reads.
    """

    def __init__(self, limit: int = 1_000_000) -> None:
        self.limit = limit
        self.tables: dict[str, dict[Key, Row | None]] = {t: {} for t in VERSIONED}
        self.complete: dict[str, bool] = {t: True for t in VERSIONED}
        self.conn: Any = None
        self.chain = ""

    def load(self, conn: Any, chain: str) -> None:
        """Forget everything; read every current row (valid_to IS NULL) of tables small enough to hold."""
        self.conn, self.chain = conn, chain
        for name, lay in VERSIONED.items():
            self.tables[name] = {}
            n = conn.execute(f"SELECT count(*) FROM {name} WHERE chain = %s AND valid_to IS NULL", (chain,)).fetchone()[0]
            self.complete[name] = n <= self.limit
            if self.complete[name]:
                cur = conn.execute(f"SELECT {', '.join(lay.key + lay.data)} FROM {name} "
                                   "WHERE chain = %s AND valid_to IS NULL", (chain,))
                for rec in cur:
                    key, row = self._row(lay, rec)
                    self.tables[name][key] = row

    @staticmethod
    def _row(lay: Any, rec: Any) -> tuple[Key, Row]:
        row = {c: (int(v) if t == "numeric" and v is not None else v)
               for c, t, v in zip(lay.key + lay.data, _types(lay), rec)}
        return tuple(row.pop(k) for k in lay.key), row

    def get(self, table: str, key: Key) -> Row | None:
        t = self.tables[table]
        if key in t:
            return t[key]
        if self.complete[table]:
            return None
        lay = VERSIONED[table]
        rec = self.conn.execute(
            f"SELECT {', '.join(lay.key + lay.data)} FROM {table} WHERE chain = %s AND "
            + " AND ".join(f"{k} = %s" for k in lay.key) + " AND valid_to IS NULL", (self.chain, *key)).fetchone()
        row = self._row(lay, rec)[1] if rec else None
        self._store(table, key, row)
        return row

    def _store(self, table: str, key: Key, row: Row | None) -> None:
        t = self.tables[table]
        if len(t) >= self.limit:
            t.clear()
            self.complete[table] = False
        t[key] = row

    def update(self, table: str, changes: Mapping[Key, Row]) -> None:
        for key, row in changes.items():
            self._store(table, key, row)


def _types(lay: Any) -> list[str]:
    return [lay.types[lay.columns.index(c)] for c in lay.key + lay.data]


class Context:
    """Buffers of one transaction: event rows, entity versions, blocks and indexing errors."""

    def __init__(self, chain: str, cache: StateCache, addresses: Mapping[str, str]) -> None:
        self.chain = chain
        self.cache = cache
        self.addresses = {k: v.lower() for k, v in addresses.items()}  # contract name -> lowercase address
        self.rows: dict[str, list[list[Any]]] = {t: [] for t in EVENTS}
        self.overlay: dict[str, dict[Key, Row]] = {t: {} for t in VERSIONED}
        self.versions: dict[str, dict[Key, list[tuple[int, Row]]]] = {t: {} for t in VERSIONED}
        self.blocks: list[Block] = []
        self.events = 0
        self.block = 0  # block number of the event being handled
        self.marks: dict[str, list[list[Any]]] = {}  # tx hash -> ledger rows whose kind a later event decides

    # ------------------------------------------------------------------ state

    def get(self, table: str, key: Key) -> Row | None:
        """Current state of an entity (None if it does not exist). Treat the dict as read-only."""
        row = self.overlay[table].get(key)
        return row if row is not None else self.cache.get(table, key)

    def put(self, table: str, key: Key, row: Row) -> None:
        """New state of an entity as of the current block (a fresh dict: versions keep references)."""
        self.overlay[table][key] = row
        hist = self.versions[table].setdefault(key, [])
        if hist and hist[-1][0] == self.block:
            hist[-1] = (self.block, row)  # several changes in one block make one version
        else:
            hist.append((self.block, row))

    # ------------------------------------------------------------------ immutable rows

    def insert(self, table: str, ev: ChainEvent, **cols: Any) -> list[Any]:
        """Append an event row keyed by the event's (chain, tx_hash, log_index)."""
        cols.update(chain=self.chain, tx_hash=ev.tx_hash, log_index=ev.log_index, block_number=ev.block_number,
                    block_hash=ev.block_hash, block_timestamp=ev.block_timestamp)
        row = [cols[c] for c in EVENTS[table].columns]
        self.rows[table].append(row)
        return row

    def error(self, bad: UndecodableLog | ChainEvent, message: str) -> None:
        self.rows["indexing_error"].append(
            [self.chain, bad.tx_hash, bad.log_index, bad.block_number, bad.block_hash, bad.contract, message[:1000]])

    def commit_to_cache(self) -> None:
        for table, changes in self.overlay.items():
            self.cache.update(table, changes)
