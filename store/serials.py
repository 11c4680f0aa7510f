"""Registry serial ranges (Verra style `VCS-VCU-…-<start>-<end>`) and the sub-range a retirement consumed.

Rule: first in, first out within a batch. A batch whose serial number ends in `-<start>-<end>` (start ≤ end) holds
the serials start..end, one per credit unit; its retirements, in chain order, consume them from the lowest up:
a retirement of `amount` units after `before` units of the batch were retired consumes
`start + before` .. `start + before + amount - 1`, written back in the batch's own format
(`<prefix>-<first>-<last>`). A batch without such a range, or a retirement that would run past `end`, reports none.
For a token with decimals one serial is `unit` = 10**decimals base units and the rule runs on the covering serials:
`start + before // unit` .. `start + ceil((before + amount) / unit) - 1`, so a serial split between two fractional
retirements is reported by both.
"""

from __future__ import annotations

import re

_RANGE = re.compile(r"^(.{0,200}?)-(\d{1,30})-(\d{1,30})$")


def parse_range(serial: str | None) -> tuple[str, int, int] | None:
    """(prefix, start, end) of a serial number ending in -<start>-<end>; None when it has no such range."""
    if not serial or len(serial) > 256:
        return None
    m = _RANGE.match(serial)
    if m is None:
        return None
    start, end = int(m.group(2)), int(m.group(3))
    if start > end:
        return None
    return m.group(1), start, end


def consumed_range(serial: str | None, before: int, amount: int, unit: int = 1) -> str | None:
    """The serials a retirement of `amount` base units consumes after `before` units of the batch were retired,
    `unit` base units per serial (10**18 for an 18-decimals token such as a TCO2)."""
    r = parse_range(serial)
    if r is None or amount <= 0 or before < 0 or unit <= 0:
        return None
    prefix, start, end = r
    first, last = start + before // unit, start + -(-(before + amount) // unit) - 1
    if last > end:
        return None
    return f"{prefix}-{first}-{last}"
