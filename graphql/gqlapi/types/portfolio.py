"""An owner's portfolio: holdings, certificates and totals."""

from __future__ import annotations

import strawberry

from gqlapi.scalars import BigInt, BlockNumber
from gqlapi.types.certificate import Certificate
from gqlapi.types.holding import Holding


@strawberry.type(description="Sums over the portfolio's holdings.")
class PortfolioTotals:
    batches: int
    tradable: BigInt
    listed: BigInt
    retired: BigInt
    balance: BigInt
    value: BigInt = strawberry.field(description="Sum of holding values at each batch's last trade price (base units).")
    unpriced_batches: int = strawberry.field(description="Batches with a balance but no trade yet (not in value).")

    @classmethod
    def of(cls, holdings: list[Holding]) -> "PortfolioTotals":
        return cls(
            batches=len(holdings),
            tradable=sum(h.tradable for h in holdings),
            listed=sum(h.listed for h in holdings),
            retired=sum(h.retired for h in holdings),
            balance=sum(h.tradable + h.listed for h in holdings),
            value=sum((h.tradable + h.listed) * h.last_price for h in holdings if h.last_price is not None),
            unpriced_batches=sum(1 for h in holdings if h.last_price is None and h.tradable + h.listed > 0),
        )


@strawberry.type(description="What an owner holds, has listed and has retired.")
class Portfolio:
    owner: str
    chain: str | None
    block: BlockNumber | None = strawberry.field(description="The as-of block, when time-travelling.")
    holdings: list[Holding]
    totals: PortfolioTotals
    owner_lc: strawberry.Private[str]

    @strawberry.field(description="Retirement certificates issued to this owner (as holder), oldest first.")
    async def certificates(self, info: strawberry.Info) -> list[Certificate]:
        rows = await info.context.loaders.certificates_of.load((self.chain, self.owner_lc, self.block))
        return [Certificate.from_row(r, self.block) for r in rows]
