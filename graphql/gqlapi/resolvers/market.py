"""marketStats(batchId, projectId, window) and candles(batchId, interval, from, to): one query each."""

from __future__ import annotations

from typing import Annotated, Any

import strawberry

from gqlapi.convert import uint_arg
from gqlapi.errors import UserError
from gqlapi.resolvers.common import as_of, subfields
from gqlapi.sql import INDEXED_CHAINS
from gqlapi.scalars import BigInt, Timestamp
from gqlapi.types.block import BlockInput
from gqlapi.types.candle import Candle, CandleInterval
from gqlapi.types.market_stats import MarketStats, StatsWindow

# statement_timestamp(), not now(): the API's transactions begin when a connection is put back in the pool
# (gqlapi.db), so now() — the transaction's start — can lie in the past by the pool's idle time.
_NOW = "extract(epoch FROM statement_timestamp())::bigint"
_BOUNDS = {"start", "end", "startTime", "endTime"}  # marketStats fields that move with the clock


def _scope(alias: str, chain: str | None, batch_id: int | None, project_id: str | None) -> str:
    conds = [f"{alias}.chain = %(chain)s" if chain is not None else f"{alias}.chain = {INDEXED_CHAINS}"]
    if batch_id is not None:
        conds.append(f"{alias}.batch_id = %(batch)s")
    if project_id is not None:
        conds.append(f"EXISTS (SELECT 1 FROM credit_batch b WHERE b.chain = {alias}.chain AND b.batch_id = {alias}.batch_id "
                     "AND b.project_id = %(project)s)")
    return " AND ".join(conds) or "TRUE"


def _end_ts(block: int | None, chain: str | None) -> str:
    """The window's end: the as-of block's timestamp (or the latest trade at or below it), else now — or the
    indexed head's timestamp when the chain's clock runs ahead of ours (devnets, evm_increaseTime)."""
    c = " AND chain = %(chain)s" if chain is not None else ""
    if block is None:
        return f"GREATEST({_NOW}, (SELECT max(timestamp) FROM indexed_block WHERE TRUE{c}))"
    return (f"COALESCE((SELECT max(timestamp) FROM indexed_block WHERE number = %(block)s{c}), "
            f"(SELECT max(block_timestamp) FROM trade WHERE block_number <= %(block)s{c}), {_NOW})")


def stats_sql(chain: str | None, batch_id: int | None, project_id: str | None, window: int,
              block: int | None, validity: bool = False) -> tuple[str, dict[str, Any]]:
    """The marketStats query (also the benchmark's raw-SQL baseline). `validity`: also the earliest window end at
    which the answer changes with no new data (`changes_at`: the oldest trade in the window leaves it, or a trade
    stamped after the window's end enters it; null: never), for the answer cache (gqlapi.answers)."""
    p = {"chain": chain, "batch": batch_id, "project": project_id, "window": window, "block": block}
    upto_t = "t.block_number <= %(block)s" if block is not None else "TRUE"
    asof_l = ("l.valid_from <= %(block)s AND (l.valid_to IS NULL OR l.valid_to > %(block)s)"
              if block is not None else "l.valid_to IS NULL")
    start = "0" if window == 0 else "(SELECT e FROM bounds) - %(window)s"
    changes = ""
    if validity:
        leaves = "NULL" if window == 0 else "(SELECT min(block_timestamp) FROM win) + %(window)s + 1"
        changes = (f",\n  LEAST({leaves}, (SELECT min(block_timestamp) FROM scope "
                   "WHERE block_timestamp > (SELECT e FROM bounds))) AS changes_at")
    sql = f"""
WITH bounds AS MATERIALIZED (SELECT {_end_ts(block, chain)} AS e),
scope AS NOT MATERIALIZED (SELECT t.* FROM trade t WHERE {_scope('t', chain, batch_id, project_id)} AND {upto_t}),
win AS MATERIALIZED (SELECT * FROM scope WHERE block_timestamp >= {start} AND block_timestamp <= (SELECT e FROM bounds)),
agg AS (SELECT count(*) AS trade_count, sum(amount) AS volume, sum(amount * price_per_unit) AS quote_volume,
               max(price_per_unit) AS high, min(price_per_unit) AS low FROM win),
lst AS (SELECT min(l.price_per_unit) AS floor, count(*) AS open_listings, sum(l.amount_remaining) AS listed_amount
        FROM listing l WHERE {_scope('l', chain, batch_id, project_id)} AND {asof_l} AND l.status = 'active')
SELECT (SELECT e FROM bounds) AS end_ts, {start} AS start_ts, agg.*, lst.*,
  (SELECT price_per_unit FROM win ORDER BY block_timestamp, block_number, log_index LIMIT 1) AS open,
  (SELECT price_per_unit FROM scope WHERE block_timestamp <= (SELECT e FROM bounds)
     ORDER BY block_timestamp DESC, block_number DESC, log_index DESC LIMIT 1) AS last_price,
  (SELECT price_per_unit FROM scope WHERE block_timestamp < {start}
     ORDER BY block_timestamp DESC, block_number DESC, log_index DESC LIMIT 1) AS prev_price{changes}
FROM agg, lst"""
    return sql, p


async def market_stats(
    info: strawberry.Info,
    batch_id: BigInt | None = None,
    project_id: str | None = None,
    window: StatsWindow = StatsWindow.DAY,
    chain: str | None = None,
    block: BlockInput | None = None,
) -> MarketStats:
    """Volume, trades, VWAP, last/high/low, change over the window, floor and open listings."""
    bid = uint_arg(batch_id, "batchId")
    at = await as_of(info, block, chain)
    keeping = info.context.keeping
    sql, params = stats_sql(chain, bid, project_id, window.value, at, validity=keeping)
    row = (await info.context.db.fetch(sql, params))[0]
    if keeping:  # the answer holds until the window's content changes; with its bounds asked, until the next second
        info.context.keep_until(int(row["end_ts"]) + 1 if subfields(info) & _BOUNDS else row["changes_at"])
    vol = int(row["volume"] or 0)
    row["vwap"] = int(row["quote_volume"]) // vol if vol else None
    row["ref_price"] = row["prev_price"] if row["prev_price"] is not None else row["open"]
    return MarketStats.from_row(row, chain=chain, batch_id=bid, project_id=project_id, window=window,
                                start=int(row["start_ts"]), end=int(row["end_ts"]))


async def candles(
    info: strawberry.Info,
    batch_id: BigInt,
    interval: CandleInterval = CandleInterval.HOUR,
    from_: Annotated[Timestamp | None, strawberry.argument(name="from", description="Unix seconds (default: 100 intervals before `to`).")] = None,
    to: Annotated[Timestamp | None, strawberry.argument(description="Unix seconds, exclusive (default: now / the as-of block).")] = None,
    chain: str | None = None,
    block: BlockInput | None = None,
) -> list[Candle]:
    """OHLCV per interval over [from, to); intervals without trades are omitted."""
    bid = uint_arg(batch_id, "batchId")
    at = await as_of(info, block, chain)
    width = interval.value
    limit = info.context.limits.max_page_size
    if to is not None and from_ is not None:
        if to <= from_:
            raise UserError("candles: `to` must be after `from`")
        if (to - from_) // width > limit:
            raise UserError(f"candles: the range spans {(to - from_) // width} intervals; at most {limit} "
                            "(narrow it or widen the interval)")
    p: dict[str, Any] = {"chain": chain, "batch": bid, "w": width, "block": at, "limit": limit}
    end = "%(to)s" if to is not None else _end_ts(at, chain) + " + 1"
    start = "%(from)s" if from_ is not None else f"({end}) - %(w)s * 100"
    p.update({"to": to, "from": from_})
    upto_t = "t.block_number <= %(block)s" if at is not None else "TRUE"
    sql = f"""
SELECT (t.block_timestamp / %(w)s) * %(w)s AS bucket,
  (array_agg(t.price_per_unit ORDER BY t.block_number, t.log_index))[1] AS open,
  max(t.price_per_unit) AS high, min(t.price_per_unit) AS low,
  (array_agg(t.price_per_unit ORDER BY t.block_number DESC, t.log_index DESC))[1] AS close,
  sum(t.amount) AS volume, sum(t.amount * t.price_per_unit) AS quote_volume, count(*) AS trades
FROM trade t WHERE {_scope('t', chain, bid, None)} AND {upto_t}
  AND t.block_timestamp >= {start} AND t.block_timestamp < {end}
GROUP BY 1 ORDER BY 1 LIMIT %(limit)s"""
    rows = await info.context.db.fetch(sql, p)
    if to is None or from_ is None:
        info.context.keep_until(0)  # bounds that follow the clock: not kept
    return [Candle.from_row(r) for r in rows]
