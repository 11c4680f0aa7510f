"""One nonce owner per (chain, key): a session advisory lock for mutual exclusion, a lease row for fencing.

The advisory lock lives on a dedicated connection, so a SIGKILLed owner releases it the moment Postgres sees the
socket close (no TTL to wait out). Each takeover bumps `oracle_lease.epoch`; every transaction that moves the
nonce counter locks the lease row FOR SHARE and checks the epoch, so a stale owner that lost its lock can no
longer persist a nonce (the new owner's epoch bump waits for, then invalidates, its transactions).
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

import psycopg

log = logging.getLogger("carbonledger.oracle.lease")


class LeaseLost(Exception):
    """This process no longer owns the signing key's nonces; stop sending at once."""


def lock_key(name: str) -> int:
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


class NonceLease:
    def __init__(self, url: str, name: str, owner: str) -> None:
        self.url, self.name, self.owner = url, name, owner
        self.conn: psycopg.Connection | None = None
        self.epoch: int | None = None
        self._beat = 0.0

    @property
    def held(self) -> bool:
        return self.conn is not None and self.epoch is not None

    def try_acquire(self) -> bool:
        conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
        try:
            if not conn.execute("SELECT pg_try_advisory_lock(%s)", (lock_key(self.name),)).fetchone()[0]:
                conn.close()
                return False
            self.epoch = conn.execute(
                "INSERT INTO oracle_lease (name, owner, epoch) VALUES (%s, %s, 1) ON CONFLICT (name) DO UPDATE"
                " SET owner = excluded.owner, epoch = oracle_lease.epoch + 1, acquired_at = now(), heartbeat_at = now()"
                " RETURNING epoch", (self.name, self.owner),
            ).fetchone()[0]
        except BaseException:
            conn.close()
            raise
        self.conn = conn
        self._beat = time.monotonic()
        log.info("nonce lease acquired", extra={"lease": self.name, "epoch": self.epoch})
        return True

    def heartbeat(self, every_s: float) -> None:
        """Prove the lock connection is alive (a dead one means the lock is gone); raises LeaseLost."""
        if not self.held:
            raise LeaseLost(self.name)
        if time.monotonic() - self._beat < every_s:
            return
        try:
            n = self.conn.execute(  # type: ignore[union-attr]
                "UPDATE oracle_lease SET heartbeat_at = now() WHERE name = %s AND owner = %s AND epoch = %s",
                (self.name, self.owner, self.epoch),
            ).rowcount
        except psycopg.Error as exc:
            self.release()
            raise LeaseLost(f"lock connection failed: {type(exc).__name__}") from None
        if n != 1:
            self.release()
            raise LeaseLost("lease taken over")
        self._beat = time.monotonic()

    def fence(self, cur: Any) -> None:
        """Inside a transaction that moves nonces: block takeovers until commit and check we still own it."""
        row = cur.execute("SELECT owner, epoch FROM oracle_lease WHERE name = %s FOR SHARE", (self.name,)).fetchone()
        if row is None or row[0] != self.owner or row[1] != self.epoch:
            raise LeaseLost("fenced: another owner holds the lease")

    def wait_notify(self, channel: str, timeout: float) -> None:
        """Sleep until an ingress NOTIFY (new intent) or `timeout`."""
        if self.conn is None:
            time.sleep(timeout)
            return
        try:
            for _ in self.conn.notifies(timeout=timeout, stop_after=1):
                break
        except psycopg.Error:  # the lock session died: so did the lock; the next round finds out and re-acquires
            log.warning("nonce lease connection lost", extra={"lease": self.name})
            self.release()

    def release(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()  # closing the session releases the advisory lock
            except Exception:  # noqa: BLE001
                pass
        self.conn, self.epoch = None, None
