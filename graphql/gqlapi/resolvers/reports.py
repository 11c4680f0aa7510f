"""retirementReport(beneficiary | holder, from, to, chain): an offset report (store.reports, same SQL as the CLI)."""

from __future__ import annotations

from typing import Annotated

import strawberry

from gqlapi.convert import address_arg
from gqlapi.errors import UserError
from gqlapi.scalars import BigInt, Timestamp
from gqlapi.types.certificate import Certificate
from store.reports import MONTHS_SQL, ROWS_SQL, TOTALS_SQL, ReportFilter, totals


@strawberry.type(description="tCO2e retired for one project in the period.")
class ProjectTotal:
    project_id: str
    amount: BigInt


@strawberry.type(description="tCO2e retired of one vintage in the period (null: batch details unknown).")
class VintageTotal:
    vintage: int | None
    amount: BigInt


@strawberry.type(description="tCO2e retired in one calendar month (UTC) for one project.")
class MonthTotal:
    month: str = strawberry.field(description="YYYY-MM")
    project_id: str
    amount: BigInt


@strawberry.type(description="Retirements of a beneficiary or holder in a period, with exact totals (one credit "
                 "unit = one tCO2e). Totals cover the whole period even when `certificates` is cut (`truncated`).")
class RetirementReport:
    certificates: list[Certificate]
    truncated: bool
    certificate_count: int
    total_amount: BigInt
    by_project: list[ProjectTotal]
    by_vintage: list[VintageTotal]
    by_month: list[MonthTotal]


async def retirement_report(
    info: strawberry.Info,
    beneficiary: str | None = None,
    holder: str | None = None,
    from_: Annotated[Timestamp | None, strawberry.argument(name="from", description="Unix seconds, inclusive "
                                                           "(default: the beginning).")] = None,
    to: Annotated[Timestamp | None, strawberry.argument(description="Unix seconds, exclusive (default: no end).")] = None,
    chain: str | None = None,
    first: Annotated[int | None, strawberry.argument(description="Most certificates to list (default and max: the max page size).")] = None,
) -> RetirementReport:
    """An offset report: the certificates, totals per project, vintage and month."""
    who = address_arg(holder, "holder")
    try:
        f = ReportFilter(beneficiary=beneficiary, holder=who, since=from_ or 0, until=to if to is not None else 2**62,
                         chain=chain)
    except ValueError as exc:
        raise UserError(f"retirementReport: {exc}") from None
    limit = info.context.limits.max_page_size if first is None else max(0, min(first, info.context.limits.max_page_size))
    db = info.context.db
    rows = await db.fetch(ROWS_SQL, [*f.params(), limit + 1])
    sums = totals(await db.fetch(TOTALS_SQL, f.params()))
    months = await db.fetch(MONTHS_SQL, f.params())
    return RetirementReport(
        certificates=[Certificate.from_row(r) for r in rows[:limit]], truncated=len(rows) > limit,
        certificate_count=sums["certificates"], total_amount=sums["amount"],
        by_project=[ProjectTotal(project_id=p["project_id"], amount=p["amount"]) for p in sums["by_project"]],
        by_vintage=[VintageTotal(vintage=v["vintage"], amount=v["amount"]) for v in sums["by_vintage"]],
        by_month=[MonthTotal(month=m["month"], project_id=m["project_id"], amount=int(m["amount"])) for m in months])
