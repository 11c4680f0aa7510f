"""Chain-of-custody SQL.

ERC-1155 credits are fungible, so "where did these credits come from" is answered by tracing back: start from an
address at a position (the retirement, or the as-of block for an owner), follow every transfer or sale *into* an
address already on the trace that happened *before* the position it was reached at, and add the sender (for a
sale, the seller, not the marketplace). The custody chain is every mint, transfer, sale and unlisting into a
traced address, every listing by one, each before its cut-off, and the retirement itself, in chain order.

A mint carries the oracle's approval record (oracle_verification: who requested it, who approved it and when),
matched by its verification hash, so auditors see the four eyes behind every issuance.

Everything is one recursive query, batched over many starts (DataLoader keys). The trace walks the ledger by
receiver and batch, and by sender (ix_ledger_entry_receiver / ix_ledger_entry_sender), so its cost follows the custody
chain, not the batch's whole history; only `batch_provenance` (every event of a batch) reads the batch's history.
"""

from __future__ import annotations

from typing import Any

_SELLER = """LEFT JOIN LATERAL (SELECT t.seller, t.listing_id, t.auction_id, t.price_per_unit, t.payment_ref FROM trade t
    WHERE {e}.kind IN ('sale', 'auction_settled') AND t.chain = {e}.chain AND t.tx_hash = {e}.tx_hash AND t.batch_id = {e}.batch_id
      AND t.buyer = {e}.to_addr ORDER BY t.log_index LIMIT 1) {t} ON TRUE"""

_TRACE = """
trace(ord, addr, b, l, s) AS (
  SELECT ord, holder, b, l, s FROM starts
  UNION
  SELECT a.ord, COALESCE(t.seller, e.from_addr), e.block_number, e.log_index, e.seq
  FROM trace a JOIN starts st ON st.ord = a.ord
  JOIN ledger_entry e ON e.chain = st.chain AND e.to_addr = a.addr AND e.block_number <= a.b
   AND e.batch_id = st.batch_id AND e.kind IN ('transfer', 'sale', 'auction_settled')
   AND (e.block_number, e.log_index, e.seq) < (a.b, a.l, a.s)
  """ + _SELLER.format(e="e", t="t") + """
)"""

# Custody rows: movements into a traced address, and listings by one, before its cut-off.
_PICKED = """
picked AS (
  SELECT DISTINCT ON (x.ord, x.chain, x.block_number, x.log_index, x.seq) x.* FROM (
    SELECT a.ord, e.* FROM trace a JOIN starts st ON st.ord = a.ord
    JOIN ledger_entry e ON e.chain = st.chain AND e.to_addr = a.addr AND e.block_number <= a.b
     AND e.batch_id = st.batch_id AND e.kind IN ('mint', 'transfer', 'sale', 'auction_settled', 'unlist')
     AND (e.block_number, e.log_index, e.seq) < (a.b, a.l, a.s)
    UNION ALL
    SELECT a.ord, e.* FROM trace a JOIN starts st ON st.ord = a.ord
    JOIN ledger_entry e ON e.chain = st.chain AND e.from_addr = a.addr AND e.block_number <= a.b
     AND e.batch_id = st.batch_id AND e.kind = 'list' AND (e.block_number, e.log_index, e.seq) < (a.b, a.l, a.s)
    {outgoing}
  ) x
)"""

# The owner's own movements of the batch: transfers out and sales of their listings.
_OUTGOING = """
    UNION ALL
    SELECT st.ord, e.* FROM starts st
    JOIN ledger_entry e ON e.chain = st.chain AND e.from_addr = st.holder AND e.batch_id = st.batch_id
     AND e.kind = 'transfer' AND e.block_number <= st.b
    UNION ALL
    SELECT st.ord, e.* FROM starts st
    JOIN trade t ON t.chain = st.chain AND t.seller = st.holder AND t.batch_id = st.batch_id AND t.block_number <= st.b
    JOIN ledger_entry e ON e.chain = t.chain AND e.block_number = t.block_number AND e.tx_hash = t.tx_hash
     AND e.batch_id = t.batch_id AND e.to_addr = t.buyer AND e.kind IN ('sale', 'auction_settled')"""

_OUTPUT = """
SELECT p.ord, st.chain AS _chain, st.cert AS _cert, p.chain, p.tx_hash, p.log_index, p.seq, p.block_number,
       p.block_hash, p.block_timestamp, p.tx_index, p.kind, p.batch_id, p.amount, COALESCE(t.seller, p.from_addr) AS from_addr,
       p.to_addr, m.verification_hash, COALESCE(t.listing_id, lst.listing_id) AS listing_id, t.auction_id,
       COALESCE(t.price_per_unit, lst.price_per_unit) AS price_per_unit, t.payment_ref,
       NULL::numeric AS certificate_id, NULL AS beneficiary, NULL AS reason,
       v.requested_by, v.approved_by, v.approved_at
FROM picked p JOIN starts st ON st.ord = p.ord
""" + _SELLER.format(e="p", t="t") + """
LEFT JOIN LATERAL (SELECT m.verification_hash FROM mint_event m WHERE p.kind = 'mint' AND m.chain = p.chain
  AND m.tx_hash = p.tx_hash AND m.batch_id = p.batch_id AND m.to_addr = p.to_addr LIMIT 1) m ON TRUE
LEFT JOIN LATERAL (SELECT v.requested_by, v.approved_by, extract(epoch FROM v.approved_at)::bigint AS approved_at
  FROM oracle_verification v WHERE v.verification_hash = m.verification_hash) v ON TRUE
LEFT JOIN LATERAL (SELECT l.listing_id, l.price_per_unit FROM listing l WHERE p.kind = 'list' AND l.chain = p.chain
  AND l.created_tx = p.tx_hash AND l.batch_id = p.batch_id ORDER BY l.valid_from LIMIT 1) lst ON TRUE
WHERE p.kind <> 'burn'
UNION ALL
SELECT st.ord, st.chain, st.cert, r.chain, r.tx_hash, r.log_index, 0, r.block_number, r.block_hash,
       r.block_timestamp, r.tx_index, 'retirement', r.batch_id, r.amount, r.holder, NULL, NULL, NULL, NULL, NULL, NULL,
       r.certificate_id, r.beneficiary, r.reason, NULL, NULL, NULL
FROM starts st JOIN retirement r ON r.chain = st.chain AND r.batch_id = st.batch_id AND {retired}
"""
_ORDER = "ORDER BY ord, block_number, log_index, seq\n"

_MAX = 9223372036854775807


async def certificate_provenance(db: Any, keys: list[tuple[str, int]], block: int | None) -> list[dict[str, Any]]:
    """Custody events for each (chain, certificate_id); rows carry _chain/_cert to regroup them."""
    params: list[Any] = [[k[0] for k in keys], [k[1] for k in keys], _MAX if block is None else block]
    starts = (
        "starts AS (SELECT k.ord, r.chain, r.certificate_id AS cert, r.batch_id, r.holder, r.block_number AS b, "
        "r.log_index AS l, 0::bigint AS s FROM unnest(%s::text[], %s::numeric[]) WITH ORDINALITY AS k(chain, cert, ord) "
        "JOIN retirement r ON r.chain = k.chain AND r.certificate_id = k.cert WHERE r.block_number <= %s)"
    )
    sql = (f"WITH RECURSIVE {starts}, {_TRACE}, {_PICKED.format(outgoing='')}"
           + _OUTPUT.format(retired="r.certificate_id = st.cert") + _ORDER)
    return await db.fetch(sql, params)


def certificate_bundle_sql(where: str, batch_cond: str | None, provenance: bool) -> str:
    """One statement for a certificate and what its document asks with it: the retirement rows matching `where`
    (alias r, at most 2: the caller refuses an id found on several chains), each with its batch as JSON
    (`_batch`, the batch loader's row, when `batch_cond` says which version) and its custody rows as a JSON array
    (`_provenance`, certificate_provenance's rows in its order). One statement sees one snapshot, so the request
    needs no transaction (gqlapi.db) and makes one round trip instead of three."""
    cols = ["c.*"]
    ctes = [f"cert AS MATERIALIZED (SELECT r.*, row_number() OVER ()::bigint AS _ord FROM "
            f"(SELECT r.* FROM retirement r WHERE {where} LIMIT 2) r)"]
    if provenance:
        ctes.append("starts AS (SELECT r._ord AS ord, r.chain, r.certificate_id AS cert, r.batch_id, "
                    "r.holder, r.block_number AS b, r.log_index AS l, 0::bigint AS s FROM cert r)")
        ctes += [_TRACE.strip(), _PICKED.format(outgoing="").strip(),
                 "prov AS (" + _OUTPUT.format(retired="r.certificate_id = st.cert") + ")"]
        cols.append("(SELECT json_agg(p ORDER BY p.block_number, p.log_index, p.seq) FROM prov p WHERE p.ord = c._ord) "
                    "AS _provenance")
    if batch_cond is not None:
        cols.append(f"(SELECT row_to_json(b) FROM credit_batch b WHERE b.chain = c.chain AND b.batch_id = c.batch_id "
                    f"AND {batch_cond} LIMIT 1) AS _batch")
    return f"WITH RECURSIVE {', '.join(ctes)} SELECT {', '.join(cols)} FROM cert c"


async def owner_provenance(db: Any, chain: str, batch_id: int, owner: str, block: int | None, limit: int) -> list[dict[str, Any]]:
    """Custody events that brought credits of a batch to `owner`, plus the owner's own movements of them."""
    cut = _MAX if block is None else block
    starts = (
        "starts AS (SELECT 1::bigint AS ord, %s::text AS chain, NULL::numeric AS cert, %s::numeric AS batch_id, "
        "%s::text AS holder, %s::bigint AS b, 2147483647::bigint AS l, 0::bigint AS s)"
    )
    sql = (f"WITH RECURSIVE {starts}, {_TRACE}, {_PICKED.format(outgoing=_OUTGOING)}"
           + _OUTPUT.format(retired="r.holder = st.holder AND r.block_number <= st.b") + _ORDER + "LIMIT %s")
    return await db.fetch(sql, [chain, batch_id, owner, cut, limit])


async def batch_provenance(db: Any, chain: str, batch_id: int, block: int | None, limit: int) -> list[dict[str, Any]]:
    """Every custody event of a batch in chain order (burns appear as their retirement)."""
    cut = _MAX if block is None else block
    starts = "starts AS (SELECT 1::bigint AS ord, %s::text AS chain, NULL::numeric AS cert, %s::numeric AS batch_id, %s::bigint AS b)"
    picked = ("picked AS (SELECT 1::bigint AS ord, e.* FROM ledger_entry e JOIN starts st ON e.chain = st.chain "
              "AND e.batch_id = st.batch_id AND e.block_number <= st.b)")
    sql = f"WITH {starts}, {picked}" + _OUTPUT.format(retired="r.block_number <= st.b") + _ORDER + "LIMIT %s"
    return await db.fetch(sql, [chain, batch_id, cut, limit])
