"""KlimaInfinity (protocol klima_infinity): `CarbonRetired`, without and with `tokenId` (ERC-1155 credits).

Klima retires credits of other markets on a beneficiary's behalf, so the retirement may already be indexed from
the credit's own contract (a followed TCO2's `Retired`, an ICR `RetiredVintage`) earlier in the same transaction.
Then that certificate is annotated (beneficiary, message, retiring address in `market_ref`) instead of counted
twice. Otherwise (the credit's contract is not followed) the Klima event is the certificate: holder the retiring
address, batch `int(carbonToken) << 96 | tokenId` (chains.evm.markets; created with protocol klima_infinity
when the token's own contract is not followed), id `block << 32 | log index`.
"""

from __future__ import annotations

from chains.base import ChainEvent
from indexer.context import Context
from indexer.handlers.external import add_ref, batch_of, col, retire
from indexer.registry import handler

KLIMA = "klima_infinity"


@handler("KlimaInfinity:CarbonRetired")
def carbon_retired(ev: ChainEvent, ctx: Context) -> None:
    a = ev.args
    batch = batch_of(ctx, ev, a["carbonToken"], a.get("tokenId", 0))
    if batch is None:
        return
    beneficiary = a["beneficiaryString"] or a["beneficiaryAddress"]
    ref = f"klima retiredBy {a['retiringAddress']} for {a['beneficiaryAddress']}"
    for row in ctx.tx_rows("retirement", ev):
        if col(row, "batch_id") == batch and not col(row, "beneficiary") and "klima" not in (col(row, "market_ref") or ""):
            ctx.amend("retirement", row, "beneficiary", beneficiary)
            ctx.amend("retirement", row, "reason", a["retirementMessage"])
            add_ref(ctx, row, ref)
            return
    retire(ctx, ev, KLIMA, a["retiringAddress"], batch,
           a["retiredAmount"], beneficiary, a["retirementMessage"], ref)
