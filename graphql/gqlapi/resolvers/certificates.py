"""certificates(where, orderBy, first, after, block) and certificate(id, chain, block)."""

from __future__ import annotations

from enum import Enum

import strawberry

from gqlapi.convert import address_arg, uint_arg
from gqlapi.errors import UserError
from gqlapi.resolvers.common import Query, as_of, order_of, paginate
from gqlapi.scalars import BigInt
from gqlapi.sql import chain_is, upto
from gqlapi.types.block import BlockInput
from gqlapi.types.certificate import Certificate
from gqlapi.types.pagination import Connection

PROJECT = "EXISTS (SELECT 1 FROM credit_batch b WHERE b.chain = {a}.chain AND b.batch_id = {a}.batch_id AND b.project_id = %s)"


@strawberry.input(description="Certificate filters (all optional, AND-ed).")
class CertificateFilter:
    chain: str | None = None
    holder: str | None = None
    beneficiary: str | None = None
    batch_id: BigInt | None = None
    project_id: str | None = None
    since: int | None = strawberry.field(default=None, description="Block timestamp ≥ (unix seconds).")
    until: int | None = strawberry.field(default=None, description="Block timestamp < (unix seconds).")


@strawberry.enum
class CertificateOrder(Enum):
    NEWEST = "newest"
    OLDEST = "oldest"
    AMOUNT_DESC = "amount_desc"
    AMOUNT_ASC = "amount_asc"


ORDERS = {
    "NEWEST": (("r.block_number", True), ("r.chain", True), ("r.log_index", True)),
    "OLDEST": (("r.block_number", False), ("r.chain", False), ("r.log_index", False)),
    "AMOUNT_DESC": (("r.amount", True), ("r.block_number", True), ("r.chain", True), ("r.log_index", True)),
    "AMOUNT_ASC": (("r.amount", False), ("r.block_number", False), ("r.chain", False), ("r.log_index", False)),
}


async def certificates(
    info: strawberry.Info,
    where: CertificateFilter | None = None,
    order_by: CertificateOrder = CertificateOrder.NEWEST,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
    block: BlockInput | None = None,
) -> Connection[Certificate]:
    """Retirement certificates, newest first by default."""
    w = where or CertificateFilter()
    at = await as_of(info, block, w.chain)
    q = Query("SELECT r.*, {keys} FROM retirement r")
    q.add(chain_is("r", w.chain, q.params)).when(address_arg(w.holder, "where.holder"), "r.holder = %s")
    q.when(w.beneficiary, "r.beneficiary = %s").when(uint_arg(w.batch_id, "where.batchId"), "r.batch_id = %s")
    q.when(w.project_id, PROJECT.format(a="r")).when(w.since, "r.block_timestamp >= %s").when(w.until, "r.block_timestamp < %s")
    q.where.append(upto("r", at, q.params))
    return await paginate(info, q, order_of(order_by, ORDERS), first, after, lambda r: Certificate.from_row(r, at), last, before)


async def certificate(
    info: strawberry.Info, id: BigInt, chain: str | None = None, block: BlockInput | None = None
) -> Certificate | None:
    """One certificate by its on-chain id (pass `chain` when several chains are indexed)."""
    at = await as_of(info, block, chain)
    q = Query("SELECT r.* FROM retirement r").add("r.certificate_id = %s", uint_arg(id, "id"))
    q.add(chain_is("r", chain, q.params))
    q.where.append(upto("r", at, q.params))
    rows = await info.context.db.fetch(f"{q.select} WHERE {q.sql_where()} LIMIT 2", q.params)
    if len(rows) > 1:
        raise UserError(f"certificate {id} exists on several chains; pass `chain`")
    return Certificate.from_row(rows[0], at) if rows else None
