"""The cyclic collector tuned for a long-running daemon whose work allocates many short-lived containers.

CPython runs a young collection every 700 container allocations and a full one whenever the survivors since the
last reach a quarter of the old heap. A backfill allocates ~20 containers per log (the node's JSON, the decoded
arguments, the rows) and holds a whole prefetched range alive while the next is decoded, so those collections kept
re-scanning the same live range and every module, type and ABI loaded at start-up. Measured on
`bench/backfill.py --events 200000`: the collector took ~40% of the indexer's CPU (its 38-40 us per event fell
to ~22-25 with the collector out of the way), while the garbage it actually found was ~900 objects per 50k events (httpx
response streams, sqlalchemy dialects: reference cycles that plain reference counting cannot free).

`settle()` is called once, when a daemon has finished starting: everything built so far is frozen (the collector
never scans it again: it lives as long as the process). The indexer also raises the young threshold so a collection
runs per ~50k container allocations rather than per 700: cycles are still collected, just in fewer, larger sweeps;
memory stays bounded and reference counting still frees everything else at once. The API and the oracle only
freeze: their requests leave little alive, and the wider spacing measured no better there.
"""

from __future__ import annotations

import gc

YOUNG = 50_000  # container allocations between young collections (CPython's default: 700)


def settle(young: int | None = YOUNG) -> None:
    """Freeze what start-up built and (unless `young` is None) space young collections out to one per `young`
    container allocations; cheap to call again."""
    gc.collect()
    gc.freeze()
    if young is not None:
        _, middle, old = gc.get_threshold()
        gc.set_threshold(max(young, 1), middle, old)
