"""The auction keeper: settles every ended auction exactly once, and reports the ones that stay open.

An auction has ended when the indexed head's timestamp has passed its end (the chain's clock, not ours: a settle
sent earlier would revert AuctionNotEnded; the block that includes it is at least as late as that head). Each
ended, still-active auction gets one write intent, `auction:<chain>:<id>` → `Auction.settle(id)`, through the
outbox like every other write: the idempotency key makes a second round a no-op, and the sender asks
`isSettled(id)` before sending (someone else may have settled it: the intent is then done, not failed; the contract
refuses a second settle anyway). An auction ended more than `stuck_after_s` ago and still active in the index is
logged as stuck, with its intent's status.
"""

from __future__ import annotations

import logging
from typing import Any

from oracle.outbox import Intent, insert_intent

log = logging.getLogger("carbonledger.oracle.keeper")


def settle_ended_auctions(pool: Any, chain: str, stuck_after_s: float) -> tuple[int, int]:
    """Queue a settle for each ended auction without one; returns (newly queued, stuck)."""
    with pool.connection() as conn, conn.transaction():
        cur = conn.cursor()
        head = cur.execute("SELECT max(timestamp) FROM indexed_block WHERE chain = %s AND number <="
                           " (SELECT block_number FROM indexer_cursor WHERE chain = %s)", (chain, chain)).fetchone()[0]
        if head is None:
            return 0, 0
        # Auctions whose settle is already queued, in flight or done are not fetched again: a backlog of those (or
        # of stuck ones) must not crowd newly ended auctions out of the batch.
        rows = cur.execute("SELECT a.auction_id, a.end_time, i.status FROM auction a LEFT JOIN oracle_intent i"
                           " ON i.idempotency_key = 'auction:' || a.chain || ':' || a.auction_id::text"
                           " WHERE a.chain = %s AND a.valid_to IS NULL AND a.status = 'active' AND a.end_time <= %s"
                           " AND (i.status IS NULL OR a.end_time < %s - %s) ORDER BY i.status NULLS FIRST, a.end_time"
                           " LIMIT 500", (chain, head, head, stuck_after_s)).fetchall()
        queued, stuck = 0, []
        for auction_id, end_time, status in rows:
            key = f"auction:{chain}:{int(auction_id)}"
            if status is None:
                _, status, created = insert_intent(cur, chain, Intent(key, "keeper", "Auction", "settle",
                                                                      [int(auction_id)]))
            else:
                created = False
            queued += created
            if head - end_time > stuck_after_s:
                stuck.append((int(auction_id), status))
    if queued:
        log.info("auction settlements queued", extra={"count": queued})
    if stuck:
        log.warning("auctions ended but still open", extra={"count": len(stuck), "auctions": stuck[:20]})
    return queued, len(stuck)
