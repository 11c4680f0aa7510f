"""Offset reports: the retirements of one beneficiary or holder in a period, with totals per project and vintage.

One SQL text serves the command line (`carbonledger report retirements`, sync psycopg) and the API
(`retirementReport`, async): rows in chain order of time, totals aggregated by Postgres over the whole period
(exact NUMERIC, never truncated even when the row list is capped).

Units: one credit unit is one tonne of CO2-equivalent (the protocol's CarbonCredit has no decimals); amounts are
exact integers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_WHERE = """r.block_timestamp >= %s AND r.block_timestamp < %s
  AND (%s::text IS NULL OR r.chain = %s)
  AND (%s::text IS NULL OR r.holder = %s)
  AND (%s::text IS NULL OR r.beneficiary = %s)"""

_BATCH = """LEFT JOIN credit_batch b ON b.chain = r.chain AND b.batch_id = r.batch_id AND b.valid_to IS NULL"""

ROWS_SQL = f"""SELECT r.chain, r.certificate_id, r.holder, r.beneficiary, r.reason, r.amount, r.batch_id, r.tx_hash,
       r.log_index, r.block_number, r.block_hash, r.block_timestamp, b.project_id, b.vintage, b.methodology,
       b.registry, b.serial_number
FROM retirement r {_BATCH}
WHERE {_WHERE}
ORDER BY r.block_timestamp, r.chain, r.block_number, r.log_index
LIMIT %s"""

TOTALS_SQL = f"""SELECT COALESCE(b.project_id, '(unknown)') AS project_id, b.vintage, count(*) AS certificates,
       sum(r.amount) AS amount
FROM retirement r {_BATCH}
WHERE {_WHERE}
GROUP BY 1, 2 ORDER BY 1, 2"""

MONTHS_SQL = f"""SELECT to_char(to_timestamp(r.block_timestamp) AT TIME ZONE 'UTC', 'YYYY-MM') AS month,
       COALESCE(b.project_id, '(unknown)') AS project_id, sum(r.amount) AS amount
FROM retirement r {_BATCH}
WHERE {_WHERE}
GROUP BY 1, 2 ORDER BY 1, 2"""

MAX_ROWS = 1_000_000  # the command line's cap (a report is read whole); the API caps at its page size


@dataclass(frozen=True)
class ReportFilter:
    """Who and when: exactly one of beneficiary or holder; [since, until) in unix seconds; optional chain."""

    beneficiary: str | None = None
    holder: str | None = None
    since: int = 0
    until: int = 2**62
    chain: str | None = None

    def __post_init__(self) -> None:
        if (self.beneficiary is None) == (self.holder is None):
            raise ValueError("pass exactly one of beneficiary or holder")
        for name, v in (("from", self.since), ("to", self.until)):
            if not 0 <= v <= 2**62:
                raise ValueError(f"{name} {str(v)[:30]} is not unix seconds between 0 and 2**62")
        if self.since >= self.until:
            raise ValueError(f"the period is empty: from {self.since} is not before to {self.until}")
        h = self.holder
        if h is not None and not (h[:2] == "0x" and len(h) in (42, 66) and all(c in "0123456789abcdefABCDEF" for c in h[2:])):
            raise ValueError(f"holder {h[:80]!r} is not a 0x address (20 bytes, or a 32-byte Substrate account)")

    def params(self) -> list[Any]:
        holder = self.holder.lower() if self.holder else None
        return [self.since, self.until, self.chain, self.chain, holder, holder, self.beneficiary, self.beneficiary]


def totals(by_project_vintage: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals per project and per vintage (exact ints) from TOTALS_SQL rows."""
    per_project: dict[str, int] = {}
    per_vintage: dict[int | None, int] = {}
    count = amount = 0
    for r in by_project_vintage:
        a = int(r["amount"])
        per_project[r["project_id"]] = per_project.get(r["project_id"], 0) + a
        per_vintage[r["vintage"]] = per_vintage.get(r["vintage"], 0) + a
        count += int(r["certificates"])
        amount += a
    return {"certificates": count, "amount": amount,
            "by_project": [{"project_id": k, "amount": v} for k, v in sorted(per_project.items())],
            "by_vintage": [{"vintage": k, "amount": v} for k, v in sorted(per_vintage.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))]}


def retirement_report(conn: Any, f: ReportFilter, limit: int = MAX_ROWS) -> dict[str, Any]:
    """The whole report from a psycopg (sync) connection: rows, totals, amounts per month and project."""
    from psycopg.rows import dict_row

    cur = conn.cursor(row_factory=dict_row)
    rows = cur.execute(ROWS_SQL, [*f.params(), limit + 1]).fetchall()
    sums = cur.execute(TOTALS_SQL, f.params()).fetchall()
    months = cur.execute(MONTHS_SQL, f.params()).fetchall()
    return {"filter": {"beneficiary": f.beneficiary, "holder": f.holder, "chain": f.chain, "from": f.since,
                       "to": f.until},
            "unit": "tCO2e", "retirements": [_plain(r) for r in rows[:limit]], "truncated": len(rows) > limit,
            "totals": totals(sums), "by_month": [_plain(m) for m in months]}


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    from decimal import Decimal

    return {k: int(v) if isinstance(v, Decimal) else v for k, v in row.items()}
