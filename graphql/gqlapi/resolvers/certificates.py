"""certificates(where, orderBy, first, after, block) and certificate(id, chain, block)."""

from __future__ import annotations

from enum import Enum

import strawberry

from gqlapi.convert import address_arg, uint_arg
from gqlapi.errors import UserError
from gqlapi.resolvers.common import ConnectionSpec, Query, as_of, connection_resolver, subfields
from gqlapi.resolvers.provenance_sql import certificate_bundle_sql
from gqlapi.scalars import BigInt, Timestamp
from gqlapi.sql import asof, chain_is, upto
from gqlapi.types.block import BlockInput
from gqlapi.types.certificate import Certificate

PROJECT = "EXISTS (SELECT 1 FROM credit_batch b WHERE b.chain = {a}.chain AND b.batch_id = {a}.batch_id AND b.project_id = %s)"


@strawberry.input(description="Certificate filters (all optional, AND-ed).")
class CertificateFilter:
    chain: str | None = None
    holder: str | None = None
    beneficiary: str | None = None
    batch_id: BigInt | None = None
    project_id: str | None = None
    since: Timestamp | None = strawberry.field(default=None, description="Block timestamp ≥ (unix seconds).")
    until: Timestamp | None = strawberry.field(default=None, description="Block timestamp < (unix seconds).")


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


def _filters(q: Query, w: CertificateFilter) -> None:
    q.when(address_arg(w.holder, "where.holder"), "r.holder = %s").when(w.beneficiary, "r.beneficiary = %s")
    q.when(uint_arg(w.batch_id, "where.batchId"), "r.batch_id = %s").when(w.project_id, PROJECT.format(a="r"))
    q.when(w.since, "r.block_timestamp >= %s").when(w.until, "r.block_timestamp < %s")


certificates = connection_resolver(ConnectionSpec(
    "retirement r", CertificateFilter, CertificateOrder, ORDERS, Certificate, _filters,
    description="Retirement certificates, newest first by default."), "certificates", __name__)


async def fetch_certificate(info: strawberry.Info, id: BigInt, chain: str | None, at: int | None, *,
                            provenance: bool = False, batch: bool = False) -> tuple[Certificate | None, list | None]:
    """The certificate and, in the same statement, its custody rows (returned) and its batch (primed into the
    request's batch loader) when asked; see provenance_sql.certificate_bundle_sql."""
    q = Query("").add("r.certificate_id = %s", uint_arg(id, "id"))
    q.add(chain_is("r", chain, q.params))
    q.where.append(upto("r", at, q.params))
    batch_cond = asof("b", at, q.params) if batch else None
    if not provenance and batch_cond is None:
        rows = await info.context.db.fetch(f"SELECT r.* FROM retirement r WHERE {q.sql_where()} LIMIT 2", q.params)
    else:
        rows = await info.context.db.fetch(certificate_bundle_sql(q.sql_where(), batch_cond, provenance), q.params)
    if len(rows) > 1:
        raise UserError(f"certificate {id} exists on several chains; pass `chain`")
    if not rows:
        return None, None
    cert = Certificate.from_row(rows[0], at)
    if batch:
        info.context.loaders.batch.prime((cert.chain, cert.batch_id, at), rows[0]["_batch"])
    return cert, (rows[0]["_provenance"] or []) if provenance else None


async def certificate(
    info: strawberry.Info, id: BigInt, chain: str | None = None, block: BlockInput | None = None
) -> Certificate | None:
    """One certificate by its on-chain id (pass `chain` when several chains are indexed)."""
    at = await as_of(info, block, chain)
    wanted = subfields(info)
    provenance = "provenance" in wanted
    cert, rows = await fetch_certificate(info, id, chain, at, provenance=provenance, batch="batch" in wanted)
    if provenance and cert is not None:
        info.context.loaders.provenance.prime((cert.chain, cert.id, at), rows)
    return cert
