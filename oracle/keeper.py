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
        rows = cur.execute("SELECT auction_id, end_time FROM auction WHERE chain = %s AND valid_to IS NULL"
                           " AND status = 'active' AND end_time <= %s ORDER BY end_time LIMIT 500",
                           (chain, head)).fetchall()
        queued, stuck = 0, []
        for auction_id, end_time in rows:
            key = f"auction:{chain}:{int(auction_id)}"
            _, status, created = insert_intent(cur, chain, Intent(key, "keeper", "Auction", "settle", [int(auction_id)]))
            queued += created
            if head - end_time > stuck_after_s:
                stuck.append((int(auction_id), status))
    if queued:
        log.info("auction settlements queued", extra={"count": queued})
    if stuck:
        log.warning("auctions ended but still open", extra={"count": len(stuck), "auctions": stuck[:20]})
    return queued, len(stuck)
