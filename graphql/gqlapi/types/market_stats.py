"""Market statistics over a time window."""

from __future__ import annotations

from enum import Enum
from typing import Any

import strawberry

from gqlapi.convert import iso, percent
from gqlapi.scalars import BigInt, Timestamp


@strawberry.enum(description="Look-back window of marketStats, ending at the as-of block's time (or now).")
class StatsWindow(Enum):
    HOUR = 3600
    DAY = 86400
    WEEK = 7 * 86400
    MONTH = 30 * 86400
    YEAR = 365 * 86400
    ALL = 0


@strawberry.type(description="Trading statistics of a batch or a project over a window (prices in base units).")
class MarketStats:
    chain: str | None
    batch_id: BigInt | None
    project_id: str | None
    window: StatsWindow
    start: Timestamp = strawberry.field(description="Window start, unix seconds (0 for ALL).")
    end: Timestamp = strawberry.field(description="Window end, unix seconds.")
    volume: BigInt = strawberry.field(description="Units traded in the window.")
    quote_volume: BigInt = strawberry.field(description="Σ amount × price in the window.")
    trade_count: int
    vwap: BigInt | None = strawberry.field(description="Volume-weighted average price (rounded down).")
    open: BigInt | None = strawberry.field(description="First trade price in the window.")
    last_price: BigInt | None = strawberry.field(description="Last trade price at or before the window end.")
    high: BigInt | None
    low: BigInt | None
    change: BigInt | None = strawberry.field(description="lastPrice − price before the window (or its first trade).")
    change_percent: str | None = strawberry.field(description="change as a percentage of the reference, 2 decimals "
                                                  "(exact, rounded half to even).")
    floor: BigInt | None = strawberry.field(description="Lowest price per unit among active listings.")
    open_listings: int
    listed_amount: BigInt = strawberry.field(description="Units remaining in active listings.")
    start_time: str = strawberry.field(description="Window start, ISO-8601 UTC.")
    end_time: str = strawberry.field(description="Window end, ISO-8601 UTC.")

    @classmethod
    def from_row(cls, row: dict[str, Any], **kw: Any) -> "MarketStats":
        opt = lambda k: None if row.get(k) is None else int(row[k])  # noqa: E731
        last, ref = opt("last_price"), opt("ref_price")
        change = None if last is None or ref is None else last - ref
        pct = None if change is None or not ref else percent(change, ref)
        return cls(
            **kw,
            start_time=iso(kw["start"]),  # type: ignore[arg-type]
            end_time=iso(kw["end"]),  # type: ignore[arg-type]
            volume=int(row["volume"] or 0),
            quote_volume=int(row["quote_volume"] or 0),
            trade_count=int(row["trade_count"]),
            vwap=opt("vwap"),
            open=opt("open"),
            last_price=last,
            high=opt("high"),
            low=opt("low"),
            change=change,
            change_percent=pct,
            floor=opt("floor"),
            open_listings=int(row["open_listings"] or 0),
            listed_amount=int(row["listed_amount"] or 0),
        )
