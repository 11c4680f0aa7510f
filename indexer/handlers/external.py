"""What the handlers of existing carbon markets share: their batches, token movements and certificates.

External credits land in the same tables as carbonledger's own: a token (ERC-20 TCO2) or token id (ERC-1155 ICR)
is a credit batch with id `int(token) << 96 | token id` (chains.evm.markets), created at its first event with
`protocol` naming the market and the registry details configured for it (`markets[].batches`); Transfer events are ledger rows and move `tradable` holdings; retirements are
certificate rows with a chain-unique id `block << 32 | log index` (as the Substrate mapping does), since the
markets' own retirement ids are per contract or absent.
"""

from __future__ import annotations

from chains.base import ChainEvent
from chains.evm.markets import external_batch_id, split_batch_id
from indexer.context import Context
from indexer.handlers.carbon_credit import ZERO, bump, record_retirement
from indexer.tables import CREDIT_BATCH, EVENTS

ZERO32 = "0x" + "0" * 64
REGISTRY = {"toucan_tco2": "Toucan", "icr_project": "ICR"}
_RET = EVENTS["retirement"].columns


def batch_of(ctx: Context, ev: ChainEvent, token: str, token_id: int) -> int | None:
    """The batch id of (token, token id); None (and an indexing error) when the id does not fit."""
    try:
        return external_batch_id(token, token_id)
    except ValueError as exc:
        ctx.error(ev, f"{ev.key}: {exc}")
        return None


def ensure_batch(ctx: Context, ev: ChainEvent, batch_id: int, protocol: str) -> None:
    """Create the batch row of an external token at its first event (registry details are not in the events)."""
    if ctx.get(CREDIT_BATCH, (batch_id,)) is not None:
        return
    token, token_id = split_batch_id(batch_id)
    label = ctx.labels.get(batch_id) or {}  # registry details configured for the token (markets[].batches)
    ctx.put(CREDIT_BATCH, (batch_id,), {
        "protocol": protocol,
        "project_id": label.get("project_id") or (f"{token}" if protocol == "toucan_tco2" else f"{token}#{token_id}"),
        "vintage": label.get("vintage", 0), "methodology": label.get("methodology", ""),
        "registry": label.get("registry") or REGISTRY.get(protocol, ""), "serial_number": label.get("serial_number", ""),
        "metadata_hash": (label.get("metadata_hash") or ZERO32).lower(), "created_block": ev.block_number,
        "created_tx": ev.tx_hash, "total_minted": 0, "total_retired": 0,
    })


def move(ctx: Context, ev: ChainEvent, protocol: str, seq: int, batch_id: int, operator: str, src: str, dst: str,
         value: int) -> None:
    """One token movement: a ledger row (mint | burn | transfer), the wallets' tradable balances, the batch's
    total minted."""
    ensure_batch(ctx, ev, batch_id, protocol)
    kind = "mint" if src == ZERO else "burn" if dst == ZERO else "transfer"
    ctx.insert("ledger_entry", ev, seq=seq, batch_id=batch_id, operator=operator, from_addr=src, to_addr=dst,
               amount=value, kind=kind)
    for owner, delta in ((src, -value), (dst, value)):
        if owner != ZERO:
            bump(ctx, owner, batch_id, "tradable", delta)
    if kind == "mint":
        b = ctx.get(CREDIT_BATCH, (batch_id,))
        ctx.put(CREDIT_BATCH, (batch_id,), {**b, "total_minted": b["total_minted"] + value})


def certificate_id(ev: ChainEvent) -> int:
    return ev.block_number << 32 | ev.log_index


def retire(ctx: Context, ev: ChainEvent, protocol: str, holder: str, batch_id: int, amount: int,
           beneficiary: str = "", reason: str = "", market_ref: str | None = None) -> list:
    """A certificate for an external retirement (see module docstring); returns its row."""
    ensure_batch(ctx, ev, batch_id, protocol)
    return record_retirement(ctx, ev, certificate_id(ev), holder, batch_id, amount, beneficiary, reason, market_ref)


def col(row: list, name: str):
    """A column of a buffered retirement row."""
    return row[_RET.index(name)]


def add_ref(ctx: Context, row: list, ref: str) -> None:
    """Append `ref` to a buffered retirement row's market_ref."""
    old = col(row, "market_ref")
    ctx.amend("retirement", row, "market_ref", f"{old}; {ref}" if old else ref)
