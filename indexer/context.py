"""What handlers see: the current derived state (read-through cache) and buffers for one transaction.

A Context covers the blocks of one database transaction (a backfill range or one head block). Reads go to an
overlay of this transaction's changes, then to the committed cache; writes go to the overlay and to a per-entity
version list, so an entity changed in several blocks of a range still gets one version per block. The overlay
is merged into the cache only after the transaction commits; a failed transaction just drops it.

Within a Context each event applies atomically (`apply_event`): every change a handler makes through the Context
(put, insert, error, pending ledger marks) is journalled, and if the handler raises, the journal is replayed
backwards so the buffers are exactly as if the event had never been handled.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chains.base import Block, ChainEvent, UndecodableLog
from core.codegen import generated
from indexer.tables import EVENTS, VERSIONED

Key = tuple[Any, ...]
Row = dict[str, Any]
_MISSING: Any = object()
_KIND = EVENTS["ledger_entry"].columns.index("kind")
_TX = {t: lay.columns.index("tx_hash") for t, lay in EVENTS.items()}

# What Postgres refuses at COPY, which would stop the chain at that block for good: a NUL in text, a number
# outside its column's type. Chain data is hostile (anyone may retire with a NUL in the beneficiary; an external
# token may emit 2**256 - 1 again and again), so handlers' values are checked here and refused as the event's
# indexing error. The envelope (chain, hashes, block fields) comes checked from the reader and is not re-checked.
_ENVELOPE = {"chain", "tx_hash", "log_index", "block_number", "block_hash", "block_timestamp", "tx_index",
             "valid_from", "valid_to"}
# (lowest, highest + 1) of each number type: two's complement for the integers, 78 decimal digits either side of
# zero for NUMERIC(78, 0) (uint256's column type).
_LIMITS = {"int8": (-2**63, 2**63), "int4": (-2**31, 2**31), "numeric": (-10**78 + 1, 10**78)}


def _checks(columns: tuple[str, ...], types: tuple[str, ...]) -> tuple[tuple[int, str, str], ...]:
    return tuple((i, c, t) for i, (c, t) in enumerate(zip(columns, types)) if c not in _ENVELOPE
                 and (t == "text" or t in _LIMITS))


# insert() and put() run for every row and state change of a backfill, so each table gets its own function,
# generated once from its layout: insert's builds the row in column order (the envelope from the event, the rest
# from the handler's keyword arguments, KeyError for one it left out) and tests each text column for a NUL and each
# number against its type's bound, inline; put's tests the state's columns and the key the same way. Only a value
# that fails calls _check, which words the refusal. (Loops over (index, column, kind, bound) tuples and a dict
# merge for the envelope cost ~1.5 us per ledger row and holding change.)
_FROM_EVENT = {"tx_hash": "ev.tx_hash", "log_index": "ev.log_index", "block_number": "ev.block_number",
               "block_hash": "ev.block_hash", "block_timestamp": "ev.block_timestamp", "tx_index": "ev.tx_index",
               "chain": "chain"}


def _value_tests(table: str, columns: tuple[str, ...], types: tuple[str, ...], value: Any) -> list[str]:
    """Source lines testing `value(i, column)` of each checked column (see _checks)."""
    out = []
    for i, c, k in _checks(columns, types):
        v = value(i, c)
        if k == "text":
            out.append(f"    v = {v}\n    if type(v) is str and '\\x00' in v:\n        _check({table!r}, {c!r}, 'text', v)")
        else:
            out.append(f"    v = {v}\n    if type(v) is int and not {_LIMITS[k][0]} <= v < {_LIMITS[k][1]}:\n"
                       f"        _check({table!r}, {c!r}, {k!r}, v)")
    return out


def _row_builder(table: str, lay: Any) -> Any:
    cells = ", ".join(_FROM_EVENT.get(c, f"cols[{c!r}]") for c in lay.columns)
    tests = _value_tests(table, lay.columns, lay.types, lambda i, c: f"row[{i}]")
    return generated(f"insert {table}", "def f(cols, chain, ev):\n    row = [" + cells + "]\n"
                     + "".join(t + "\n" for t in tests) + "    return row\n", {"_check": _check})


def _state_checker(table: str, lay: Any) -> Any:
    data = set(lay.data)
    cols = tuple(c for c in lay.columns if c in data)
    types = tuple(lay.types[lay.columns.index(c)] for c in cols)
    tests = _value_tests(table, cols, types, lambda i, c: f"row[{c!r}]")
    # A state without one of its columns fails here (KeyError: the event's indexing error), not in the write thread,
    # where it would fail the range's every retry.
    tested = {c for _, c, _ in _checks(cols, types)}
    tests += [f"    row[{c!r}]" for c in cols if c not in tested]
    return generated(f"put {table}", "def f(key, row):\n" + "".join(t + "\n" for t in tests) + f"""\
    for v in key:
        if type(v) is int:
            if not 0 <= v < {10**78}:
                raise ValueError(f"{{{table!r}}}: key {{str(v)[:40]}} is out of range")
        elif type(v) is str and '\\x00' in v:
            _check({table!r}, "key", "text", v)
""", {"_check": _check})


def _check(table: str, column: str, kind: str, v: Any) -> None:
    """ValueError when Postgres would refuse `v` in `table.column` (text: no NUL; numbers: within the type)."""
    if v is None:
        return
    if kind == "text":
        if type(v) is str and "\x00" in v:
            raise ValueError(f"{table}.{column}: text with a NUL character ({v[:80]!r})")
    elif type(v) is int and not _LIMITS[kind][0] <= v < _LIMITS[kind][1]:
        raise ValueError(f"{table}.{column}: {str(v)[:40]}{'…' if len(str(v)) > 40 else ''} is out of range for {kind}")


_INSERT = {t: _row_builder(t, lay) for t, lay in EVENTS.items()}
_PUT = {t: _state_checker(t, lay) for t, lay in VERSIONED.items()}
# (lowest, highest + 1, type) of each number column of the entity tables, for Context.add
_BOUNDS = {t: {c: (*_LIMITS[k], k) for c, k in zip(lay.columns, lay.types) if k in _LIMITS}
           for t, lay in VERSIONED.items()}


class StateCache:
    """The committed current version of versioned entities of one chain: table -> key -> state (None = absent).

    A table with at most `limit` current rows is loaded whole ("complete": a miss means the entity does not
    exist). Beyond that it works lazily: a miss reads that one row from Postgres, and the table's cache is
    dropped whenever it outgrows `limit`. Memory stays bounded either way; the common case pays no reads.

    Alongside each present entity it keeps the `valid_from` of its current version (`since`), so the writer can
    close that version by primary key instead of searching for `valid_to IS NULL` among all its versions, and
    knows that an entity the cache holds as absent has no version to close at all.
    """

    def __init__(self, limit: int = 1_000_000) -> None:
        self.limit = limit
        self.tables: dict[str, dict[Key, Row | None]] = {t: {} for t in VERSIONED}
        self.complete: dict[str, bool] = {t: True for t in VERSIONED}
        self.since: dict[str, dict[Key, int]] = {t: {} for t in VERSIONED}
        self.conn: Any = None
        self.chain = ""
        self.quiesce: Any = lambda: None  # set by the sync loop: waits for a write in flight before a committed read

    def load(self, conn: Any, chain: str) -> None:
        """Forget everything; read every current row (valid_to IS NULL) of tables small enough to hold."""
        self.conn, self.chain = conn, chain
        for name, lay in VERSIONED.items():
            self.tables[name], self.since[name] = {}, {}
            n = conn.execute(f"SELECT count(*) FROM {name} WHERE chain = %s AND valid_to IS NULL", (chain,)).fetchone()[0]
            self.complete[name] = n <= self.limit
            if self.complete[name]:
                cur = conn.execute(f"SELECT {', '.join(lay.key + lay.data)}, valid_from FROM {name} "
                                   "WHERE chain = %s AND valid_to IS NULL", (chain,))
                for rec in cur:
                    key, row = self._row(lay, rec[:-1])
                    self.tables[name][key] = row
                    self.since[name][key] = int(rec[-1])

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
        self.quiesce()
        lay = VERSIONED[table]
        rec = self.conn.execute(
            f"SELECT {', '.join(lay.key + lay.data)}, valid_from FROM {table} WHERE chain = %s AND "
            + " AND ".join(f"{k} = %s" for k in lay.key) + " AND valid_to IS NULL", (self.chain, *key)).fetchone()
        row = self._row(lay, rec[:-1])[1] if rec else None
        self._store(table, key, row, int(rec[-1]) if rec else None)
        return row

    def _store(self, table: str, key: Key, row: Row | None, since: int | None) -> None:
        t = self.tables[table]
        if len(t) >= self.limit:
            t.clear()
            self.since[table].clear()
            self.complete[table] = False
        t[key] = row
        if since is None:
            self.since[table].pop(key, None)
        else:
            self.since[table][key] = since

    def current_since(self, table: str, key: Key) -> int | None | bool:
        """valid_from of the committed current version of `key`; None if it has none; False if not known."""
        since = self.since[table].get(key)
        if since is not None:
            return since
        if self.complete[table] or key in self.tables[table]:
            return None
        return False

    def update(self, table: str, changes: Mapping[Key, Row], versions: Mapping[Key, list[tuple[int, Row]]]) -> None:
        """Merge a committed transaction's final states; `versions` gives each one's valid_from."""
        for key, row in changes.items():
            self._store(table, key, row, versions[key][-1][0])


def _types(lay: Any) -> list[str]:
    return [lay.types[lay.columns.index(c)] for c in lay.key + lay.data]


class Context:
    """Buffers of one transaction: event rows, entity versions, blocks and indexing errors."""

    def __init__(self, chain: str, cache: StateCache, addresses: Mapping[str, str],
                 labels: Mapping[int, Mapping[str, Any]] | None = None) -> None:
        self.chain = chain
        self.labels = labels or {}  # external batch id -> configured registry details and `unit` (base units/serial)
        self.cache = cache
        self.addresses = {k: v.lower() for k, v in addresses.items()}  # contract name -> lowercase address
        self.rows: dict[str, list[list[Any]]] = {t: [] for t in EVENTS}
        self.overlay: dict[str, dict[Key, Row]] = {t: {} for t in VERSIONED}
        self.versions: dict[str, dict[Key, list[tuple[int, Row]]]] = {t: {} for t in VERSIONED}
        self.blocks: list[Block] = []
        self.events = 0
        self.block = 0  # block number of the event being handled
        self.marks: dict[str, list[list[Any]]] = {}  # tx hash -> ledger rows whose kind a later event decides
        self._journal: list[tuple[Any, ...]] | None = None  # undo records of the event being applied
        self._errors: dict[tuple[str, int], list[Any]] = {}  # (tx hash, log index) -> its indexing_error row
        self._by_tx: dict[tuple[str, str], list[list[Any]]] = {}  # (table, tx hash) -> rows inserted, for tx_rows

    # ------------------------------------------------------------------ one event, all or nothing

    def apply_event(self, fn: Any, ev: ChainEvent) -> None:
        """Run handler `fn` on `ev`; if it raises, undo everything it changed here, then re-raise."""
        self.block = ev.block_number
        journal: list[tuple[Any, ...]] = []
        self._journal = journal
        try:
            fn(ev, self)
        except BaseException:
            self._rollback(journal)
            raise
        finally:
            self._journal = None

    def _rollback(self, journal: list[tuple[Any, ...]]) -> None:
        for rec in reversed(journal):
            op = rec[0]
            if op == "ins":
                row = self.rows[rec[1]].pop()
                if rec[1] == "indexing_error":
                    del self._errors[(row[1], row[2])]
                else:
                    self._by_tx[(rec[1], row[_TX[rec[1]]])].pop()
            elif op == "amend":
                rec[1][6] = rec[2]
            elif op == "set":
                rec[1][rec[2]] = rec[3]
            elif op == "put":
                _, table, key, prev, hist_op, prev_last = rec
                if prev is _MISSING:
                    del self.overlay[table][key]
                else:
                    self.overlay[table][key] = prev
                hists = self.versions[table]
                if hist_op == "replace":
                    hists[key][-1] = prev_last
                else:
                    hists[key].pop()
                    if not hists[key]:
                        del hists[key]
            elif op == "mark":
                rows = self.marks[rec[1]]
                rows.pop()
                if not rows:
                    del self.marks[rec[1]]
            elif op == "resolve":
                _, tx, rows, kinds = rec
                for row, kind in zip(rows, kinds):
                    row[_KIND] = kind
                self.marks[tx] = rows

    # ------------------------------------------------------------------ state

    def get(self, table: str, key: Key) -> Row | None:
        """Current state of an entity (None if it does not exist). Treat the dict as read-only."""
        row = self.overlay[table].get(key)
        return row if row is not None else self.cache.get(table, key)

    def put(self, table: str, key: Key, row: Row) -> None:
        """New state of an entity as of the current block (a fresh dict: versions keep references)."""
        _PUT[table](key, row)
        self._record(table, key, row)

    def add(self, table: str, key: Key, column: str, delta: int, empty: Row) -> None:
        """put() of the entity's current state (`empty` when it has none) with `delta` added to one number column.
        Only that value is checked: every other one, and the key, passed put's checks when that state was put, or
        came from Postgres (a holding changes twice per transfer of a backfill: the full checks cost ~0.5 us each)."""
        row = self.overlay[table].get(key)
        if row is None:
            row = self.cache.get(table, key)
            if row is None:
                self.put(table, key, {**empty, column: empty[column] + delta})
                return
        v = row[column] + delta
        low, high, kind = _BOUNDS[table][column]
        if type(v) is int and not low <= v < high:
            _check(table, column, kind, v)
        new = row.copy()
        new[column] = v
        self._record(table, key, new)

    def _record(self, table: str, key: Key, row: Row) -> None:
        ov = self.overlay[table]
        hists = self.versions[table]
        hist = hists.get(key)
        if hist is None:
            hist = hists[key] = []
        j = self._journal
        if hist and hist[-1][0] == self.block:
            if j is not None:
                j.append(("put", table, key, ov.get(key, _MISSING), "replace", hist[-1]))
            hist[-1] = (self.block, row)  # several changes in one block make one version
        else:
            if j is not None:
                j.append(("put", table, key, ov.get(key, _MISSING), "append", None))
            hist.append((self.block, row))
        ov[key] = row

    # ------------------------------------------------------------------ immutable rows

    def insert(self, table: str, ev: ChainEvent, **cols: Any) -> list[Any]:
        """Append an event row keyed by the event's (chain, tx_hash, log_index)."""
        row = _INSERT[table](cols, self.chain, ev)
        self.rows[table].append(row)
        by_tx = self._by_tx.get((table, ev.tx_hash))
        if by_tx is None:
            by_tx = self._by_tx[(table, ev.tx_hash)] = []
        by_tx.append(row)
        if self._journal is not None:
            self._journal.append(("ins", table))
        return row

    def tx_rows(self, table: str, ev: ChainEvent) -> list[list[Any]]:
        """Event rows of `table` buffered for ev's transaction before ev (a transaction lies within one block, so
        they are all in this Context), in chain order. Read them with `EVENTS[table].columns`; change them only
        through `amend`."""
        li = EVENTS[table].columns.index("log_index")
        return [r for r in self._by_tx.get((table, ev.tx_hash), ()) if r[li] < ev.log_index]

    def amend(self, table: str, row: list[Any], column: str, value: Any) -> None:
        """Change one column of a row buffered in this Context (journalled: undone if the handler fails)."""
        at = EVENTS[table].columns.index(column)
        if column not in _ENVELOPE:
            _check(table, column, EVENTS[table].types[at], value)
        if self._journal is not None:
            self._journal.append(("set", row, at, row[at]))
        row[at] = value

    def exists(self, table: str, column: str, value: Any) -> bool:
        """Whether an event row of this chain with `column` = `value` is buffered here or committed (for rows a
        unique index guards where the chain itself does not, e.g. an anchor root remarked twice on Substrate)."""
        at = EVENTS[table].columns.index(column)
        if any(r[at] == value for r in self.rows[table]):
            return True
        conn = self.cache.conn
        self.cache.quiesce()
        return conn is not None and conn.execute(
            f"SELECT 1 FROM {table} WHERE chain = %s AND {column} = %s LIMIT 1", (self.chain, value)).fetchone() is not None

    def mark_pending(self, ev: ChainEvent, ledger_row: list[Any]) -> None:
        """Remember a ledger row of ev's tx whose kind a later event of the same tx decides."""
        self.marks.setdefault(ev.tx_hash, []).append(ledger_row)
        if self._journal is not None:
            self._journal.append(("mark", ev.tx_hash))

    def resolve_pending(self, ev: ChainEvent, kind: str) -> None:
        """Give the pending ledger rows of ev's tx (those before ev) their kind."""
        rows = self.marks.pop(ev.tx_hash, None)
        if not rows:
            return
        if self._journal is not None:
            self._journal.append(("resolve", ev.tx_hash, rows, [r[_KIND] for r in rows]))
        for row in rows:
            row[_KIND] = kind

    def error(self, bad: UndecodableLog | ChainEvent, message: str) -> None:
        """Record an indexing error naming the block, tx and log index of `bad`. A second error at the same
        position (one native event can map onto two neutral events) joins the first: one row per position."""
        message = message.replace("\x00", "\\x00")  # the error names hostile text: never carry its NUL into Postgres
        key = (bad.tx_hash, bad.log_index)
        row = self._errors.get(key)
        if row is not None:
            if self._journal is not None:
                self._journal.append(("amend", row, row[6]))
            row[6] = f"{row[6]}; {message}"[:1000]
            return
        row = [self.chain, bad.tx_hash, bad.log_index, bad.block_number, bad.block_hash, bad.contract, message[:1000]]
        self.rows["indexing_error"].append(row)
        self._errors[key] = row
        if self._journal is not None:
            self._journal.append(("ins", "indexing_error"))

    def commit_to_cache(self) -> None:
        for table, changes in self.overlay.items():
            self.cache.update(table, changes, self.versions[table])
