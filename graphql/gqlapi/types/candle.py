"""OHLCV candles."""

from __future__ import annotations

from enum import Enum
from typing import Any

import strawberry

from gqlapi.convert import iso
from gqlapi.scalars import BigInt, Timestamp


@strawberry.enum(description="Candle width.")
class CandleInterval(Enum):
    MINUTE = 60
    FIVE_MINUTES = 300
    HOUR = 3600
    FOUR_HOURS = 14400
    DAY = 86400
    WEEK = 604800


@strawberry.type(description="Open, high, low, close and volume of one interval (only intervals with trades).")
class Candle:
    start: Timestamp = strawberry.field(description="Interval start, unix seconds (aligned to the interval).")
    open: BigInt
    high: BigInt
    low: BigInt
    close: BigInt
    volume: BigInt
    quote_volume: BigInt
    trades: int
    time: str = strawberry.field(description="Interval start, ISO-8601 UTC.")

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Candle":
        return cls(
            start=int(row["bucket"]),
            open=int(row["open"]),
            high=int(row["high"]),
            low=int(row["low"]),
            close=int(row["close"]),
            volume=int(row["volume"]),
            quote_volume=int(row["quote_volume"]),
            trades=int(row["trades"]),
            time=iso(int(row["bucket"])),
        )
