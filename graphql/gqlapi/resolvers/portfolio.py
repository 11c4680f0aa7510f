"""portfolio(owner, chain, block): one query joins holdings, their batches and each batch's last price."""

from __future__ import annotations

from typing import Any

import strawberry

from gqlapi.convert import address_arg, checksum
from gqlapi.resolvers.common import as_of
from gqlapi.sql import asof, chain_is, upto
from gqlapi.types.block import BlockInput
from gqlapi.types.holding import Holding
from gqlapi.types.portfolio import Portfolio, PortfolioTotals

_BATCH_COLS = ("protocol", "project_id", "vintage", "methodology", "registry", "serial_number", "metadata_hash",
               "created_block", "created_tx", "total_minted", "total_retired")
_NUMERIC = {"total_minted", "total_retired"}


def portfolio_sql(chain: str | None, block: int | None, owner: str) -> tuple[str, list[Any]]:
    """The portfolio query and its parameters (also used by the benchmark's raw-SQL baseline)."""
    params: list[Any] = []
    batch_cond = asof("b", block, params)
    trade_cond = upto("t", block, params)
    params.append(owner)
    chain_cond = " AND " + chain_is("h", chain, params)
    holding_cond = asof("h", block, params)
    cols = ", ".join(f"b.{c}{'::text' if c in _NUMERIC else ''} AS b_{c}" for c in _BATCH_COLS)
    # uint256 columns travel as text (from_row makes them ints): psycopg's C text loader is several times cheaper
    # per value than converting NUMERIC, which is most of the client's cost for a 100-holding portfolio.
    sql = (
        "SELECT h.chain, h.owner, h.batch_id::text AS batch_id, h.tradable::text AS tradable, h.listed::text AS listed, "
        f"h.retired::text AS retired, h.valid_from, {cols}, p.price_per_unit::text AS last_price FROM holding h "
        "LEFT JOIN LATERAL (SELECT * FROM credit_batch b WHERE b.chain = h.chain AND b.batch_id = h.batch_id "
        f"AND {batch_cond} LIMIT 1) b ON TRUE "
        "LEFT JOIN LATERAL (SELECT t.price_per_unit FROM trade t WHERE t.chain = h.chain AND t.batch_id = h.batch_id "
        f"AND {trade_cond} ORDER BY t.block_number DESC, t.log_index DESC LIMIT 1) p ON TRUE "
        f"WHERE h.owner = %s{chain_cond} AND {holding_cond} AND (h.tradable + h.listed + h.retired) > 0 "
        "ORDER BY h.chain, h.batch_id"
    )
    return sql, params


async def portfolio(info: strawberry.Info, owner: str, chain: str | None = None, block: BlockInput | None = None) -> Portfolio:
    """What `owner` holds per batch (tradable, listed, retired), valued at each batch's last trade price."""
    who = address_arg(owner, "owner")
    at = await as_of(info, block, chain)
    sql, params = portfolio_sql(chain, at, who)  # type: ignore[arg-type]
    rows = await info.context.db.fetch(sql, params)
    holdings = [Holding.from_row(r) for r in rows]
    return Portfolio(owner=checksum(who), chain=chain, block=at, holdings=holdings,  # type: ignore[arg-type]
                     totals=PortfolioTotals.of(holdings), owner_lc=who)  # type: ignore[arg-type]
