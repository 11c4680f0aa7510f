"""Leadership per chain: a session-level Postgres advisory lock held on a dedicated connection.

When the leader dies its connection closes and Postgres releases the lock at once, so a standby polling
`try_acquire` takes over within its poll interval. The lease is not the only guard: every write is also
fenced on the cursor row (indexer.writer), so a leader that lost its lock unknowingly cannot write twice.
"""

from __future__ import annotations

import hashlib
import logging

import psycopg

from store.engine import libpq_url

log = logging.getLogger("carbonledger.indexer.lease")


def lock_key(chain: str, purpose: str = "indexer") -> int:
    """The advisory lock key of `purpose` for `chain` ("indexer": the chain's leadership; indexer.indexes: "indexes"
    for all chains, "*")."""
    return int.from_bytes(hashlib.sha256(f"carbonledger-{purpose}:{chain}".encode()).digest()[:8], "big", signed=True)


class Lease:
    def __init__(self, db_url: str, chain: str) -> None:
        self.url = libpq_url(db_url)
        self.chain = chain
        self.key = lock_key(chain)
        self.conn: psycopg.Connection | None = None
        self.held = False
        self.failing = False

    def try_acquire(self) -> bool:
        try:
            if self.conn is None or self.conn.closed:
                # keepalives: a leader on a dead network path loses the lock within ~10 s, not hours
                self.conn = psycopg.connect(self.url, autocommit=True, keepalives=1, keepalives_idle=5,
                                            keepalives_interval=2, keepalives_count=2,
                                            application_name=f"carbonledger-indexer-lease-{self.chain}")
            self.held = bool(self.conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()[0])
        except psycopg.Error as exc:
            if not self.failing:  # one line when the database goes away, not one per attempt
                log.warning("lease check failed: database unavailable", extra={"chain": self.chain, "error": str(exc)[:200]})
            self.failing = True
            self._drop()
            return False
        if self.failing:
            log.info("lease check works again", extra={"chain": self.chain})
            self.failing = False
        return self.held

    def alive(self) -> bool:
        """Still holding? (the lock lives exactly as long as its connection)."""
        if not self.held or self.conn is None:
            return False
        try:
            self.conn.execute("SELECT 1")
        except psycopg.Error:
            self._drop()
        return self.held

    def _drop(self) -> None:
        self.held = False
        if self.conn is not None:
            try:
                self.conn.close()
            except psycopg.Error:
                pass
        self.conn = None

    def release(self) -> None:
        if self.held and self.conn is not None:
            try:
                self.conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
            except psycopg.Error:
                pass
        self._drop()
