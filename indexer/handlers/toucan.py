"""Toucan: TCO2 tokens (one ERC-20 per project vintage; protocol toucan_tco2) and RetirementCertificates
(toucan_certificates).

A TCO2's batch id is `int(token address) << 96` (chains.evm.markets); an ERC-20 `Transfer` has no operator, so
its ledger row names the sender as operator. `Retired` comes in two ABI versions:
before 1.4 `Retired(address sender, uint256 amount)` (the shipped ABI names the second word `tokenId`; Toucan's
`_retire` emits the amount there), from 1.4 `Retired(address sender, uint256 amount, uint256 eventId)`. Both burn
the amount (a Transfer to 0x0 before them in the same transaction) and become a certificate of `sender`; the
eventId is kept in `market_ref`. `CertificateMinted(tokenId)` names the certificate NFT minted for the TCO2
retirements before it in the same transaction (retireAndMintCertificate): they get `RetirementCertificates
<address>#<tokenId>` in `market_ref`. A certificate minted in a later transaction for older retirements
(mintCertificateLegacy) carries no retirement data in its event and is not linked.
"""

from __future__ import annotations

from chains.base import ChainEvent
from chains.evm.markets import TOKEN_ID_BITS
from indexer.context import Context
from indexer.handlers.external import add_ref, col, move, retire
from indexer.registry import handler
from indexer.tables import CREDIT_BATCH

TCO2 = "toucan_tco2"


@handler("ToucanCarbonOffsets:Transfer")
def transfer(ev: ChainEvent, ctx: Context) -> None:
    a = ev.args
    move(ctx, ev, TCO2, 0, int(ev.address, 16) << TOKEN_ID_BITS, a["from"], a["from"], a["to"], a["value"])


@handler("ToucanCarbonOffsets:Retired")
def retired(ev: ChainEvent, ctx: Context) -> None:
    a = ev.args
    if "eventId" in a:  # 1.4+
        amount, ref = a["amount"], f"toucan eventId {a['eventId']}"
    else:  # before 1.4: the second word is the amount
        amount, ref = a["tokenId"], None
    retire(ctx, ev, TCO2, a["sender"], int(ev.address, 16) << TOKEN_ID_BITS, amount, market_ref=ref)


@handler("RetirementCertificates:CertificateMinted")
def certificate_minted(ev: ChainEvent, ctx: Context) -> None:
    ref = f"RetirementCertificates {ev.address}#{ev.args['tokenId']}"
    for row in ctx.tx_rows("retirement", ev):
        batch = ctx.get(CREDIT_BATCH, (col(row, "batch_id"),))
        if batch is not None and batch["protocol"] == TCO2 and "RetirementCertificates" not in (col(row, "market_ref") or ""):
            add_ref(ctx, row, ref)
