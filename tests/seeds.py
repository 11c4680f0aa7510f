"""Seeds of the randomised tests, shiftable as a whole: CARBONLEDGER_TEST_SEED=N adds N to every seed, so the same
scenarios, chaos runs and fuzzers can be run again on other random data (the independent checks do; so can a
developer) while a plain run stays reproducible. The offset in use is printed in pytest's header; a failure under
one is reproduced by setting it again."""

from __future__ import annotations

import os
import random


def offset() -> int:
    raw = os.environ.get("CARBONLEDGER_TEST_SEED", "").strip()
    if not raw:
        return 0
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"CARBONLEDGER_TEST_SEED must be an integer, got {raw!r}") from None


def rng(seed: int | str) -> random.Random:
    """random.Random(seed) shifted by the offset; with none, exactly random.Random(seed) (a string seed is suffixed
    with the offset: str seeds hash the same on every run)."""
    n = offset()
    if isinstance(seed, str):
        return random.Random(f"{seed}/{n}" if n else seed)
    return random.Random(seed + n)
