"""Pure mapping of one fullnode transaction (JSON as `GET /v1/transactions` renders it) onto neutral events.

Only committed user transactions that succeeded carry protocol events (a failed transaction's writes and events
are discarded by the VM, except the fee statement); other transaction types are skipped, including types this
code does not know. Each event of the package (contracts/aptos/interface.json) becomes the neutral events the
handlers know, with the EVM argument names, at the event's position (version, index in the transaction):

| Move event (package)        | neutral events                                                           |
|-----------------------------|--------------------------------------------------------------------------|
| carbon_credit::BatchCreated | CarbonCredit:BatchCreated                                                 |
| carbon_credit::Minted       | TransferSingle(0 -> to) + Minted                                          |
| carbon_credit::Transferred  | TransferSingle(from -> to)                                                |
| carbon_credit::Retired      | TransferSingle(holder -> 0) + Retired (the fungible asset is burned)      |
| marketplace::Listed         | TransferSingle(seller -> escrow) + Listed                                 |
| marketplace::Sold           | TransferSingle(escrow -> buyer) + Sold (paymentRef "" for on-chain buys)  |
| marketplace::Cancelled      | TransferSingle(escrow -> seller) + Cancelled                              |
| iot_verification::Anchored  | IoTAnchor:Anchored                                                        |

Credits issued as plain fungible assets by others (`fa_batches`: metadata address -> batch id) are followed
through the framework's `0x1::fungible_asset::Withdraw/Deposit {store, amount}` in transactions without package
events: the store's asset and owner come from the transaction's `changes` (FungibleStore, ObjectCore); a
withdrawal and a deposit of one asset and amount are a transfer, a lone deposit a mint, a lone withdrawal a burn.
A followed event that does not parse becomes an UndecodableLog (an indexing error), never an exception.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from chains.aptos.interface import Interface, load_interface
from chains.aptos.values import MoveValueError, address, parse, parse_struct, uint
from chains.base import ChainEvent, UndecodableLog

ZERO = "0x" + "0" * 40  # the protocol's "nobody" (mint source, burn target), as the handlers know it
ESCROW_SEED = b"marketplace-escrow"
FA_EVENTS = ("0x1::fungible_asset::Deposit", "0x1::fungible_asset::Withdraw")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def escrow_address(package: str) -> str:
    """The marketplace's escrow object (`object::create_named_object(@carbonledger, b"marketplace-escrow")`)."""
    from aptos_sdk.account_address import AccountAddress

    return address(str(AccountAddress.for_named_object(AccountAddress.from_str_relaxed(package), ESCROW_SEED)))


@dataclass(frozen=True)
class Follow:
    """What the reader follows on one chain: the package's address and fungible assets issued by others."""

    package: str  # 0x + 64 hex
    fa_batches: Mapping[str, int] = field(default_factory=dict)  # FA metadata address -> batch id
    interface: Interface = field(default_factory=load_interface)

    @functools.cached_property
    def escrow(self) -> str:
        return escrow_address(self.package)


def _neutral(spec_protocol: str, a: dict[str, Any], sender: str, escrow: str) -> list[tuple[str, str, dict]]:
    contract, name = spec_protocol.split(":")
    args = {_camel(k): v for k, v in a.items()}
    single = lambda src, dst, batch, value: ("CarbonCredit", "TransferSingle",  # noqa: E731
                                             {"operator": sender, "from": src, "to": dst, "id": batch, "value": value})
    if spec_protocol == "CarbonCredit:TransferSingle":  # carbon_credit::Transferred
        return [single(a["from"], a["to"], a["batch_id"], a["amount"])]
    if name == "BatchCreated":
        args.pop("metadata")
        return [(contract, name, args)]
    out: list[tuple[str, str, dict]] = []
    if name == "Minted":
        out.append(single(ZERO, a["to"], a["batch_id"], a["amount"]))
    elif name == "Retired":
        out.append(single(a["holder"], ZERO, a["batch_id"], a["amount"]))
    elif name == "Listed":
        out.append(single(a["seller"], escrow, a["batch_id"], a["amount"]))
    elif name == "Sold":
        out.append(single(escrow, a["buyer"], a["batch_id"], a["amount"]))
    elif name == "Cancelled":
        out.append(single(escrow, a["seller"], a["batch_id"], a["amount"]))
        args = {"listingId": a["listing_id"]}
    out.append((contract, name, args))
    return out


def _stores(changes: Any) -> dict[str, dict[str, str]]:
    """store address -> {"metadata": .., "owner": ..} from the transaction's write_resource changes."""
    out: dict[str, dict[str, str]] = {}
    for ch in changes if isinstance(changes, list) else ():
        if not isinstance(ch, dict) or ch.get("type") != "write_resource" or not isinstance(ch.get("data"), dict):
            continue
        try:
            where, t, data = address(ch.get("address")), ch["data"].get("type"), ch["data"].get("data")
            if t == "0x1::fungible_asset::FungibleStore" and isinstance(data, dict):
                out.setdefault(where, {})["metadata"] = parse("0x1::object::Object<0x1::fungible_asset::Metadata>",
                                                              data.get("metadata"))
            elif t == "0x1::object::ObjectCore" and isinstance(data, dict):
                out.setdefault(where, {})["owner"] = address(data.get("owner"))
        except MoveValueError:
            continue
    return out


def map_transaction(chain: str, tx: Mapping[str, Any], follow: Follow) -> list[ChainEvent | UndecodableLog]:
    """The neutral events of one transaction (callers pass only successful user transactions)."""
    version, tx_hash = int(tx["version"]), str(tx["hash"]).lower()
    ts = int(tx.get("timestamp") or 0) // 1_000_000
    sender = address(tx.get("sender"))
    prefix = follow.package + "::"
    out: list[ChainEvent | UndecodableLog] = []
    fa: list[tuple[int, str, dict]] = []
    for idx, ev in enumerate(tx.get("events") or ()):
        t = ev.get("type") if isinstance(ev, dict) else None
        if not isinstance(t, str):
            continue
        if t in FA_EVENTS and follow.fa_batches:
            fa.append((idx, t.rsplit("::", 1)[1], ev))
            continue
        mod, _, rest = t.partition("::")
        if "::" not in rest or mod[:2] != "0x" or len(mod) > 66:
            continue
        try:
            if address(mod) + "::" != prefix:
                continue
        except MoveValueError:
            continue
        spec = follow.interface.events.get(rest)
        if spec is None:
            continue  # an event of the package this adapter does not index (none today)
        contract = spec.protocol.split(":")[0]
        try:
            a = parse_struct(spec.fields, ev.get("data"))
        except MoveValueError as exc:
            out.append(UndecodableLog(chain, contract, version, tx_hash, tx_hash, idx, f"{rest}: {exc}"[:500]))
            continue
        for c, name, args in _neutral(spec.protocol, a, sender, follow.escrow):
            out.append(ChainEvent(chain, c, name, args, version, tx_hash, ts, tx_hash, idx, prefix + rest.split("::")[0]))
    if fa and not any(isinstance(e, ChainEvent) for e in out):
        out.extend(_map_fa(chain, version, tx_hash, ts, sender, fa, _stores(tx.get("changes")), follow))
    return out


def _map_fa(chain: str, version: int, tx_hash: str, ts: int, sender: str, fa: list[tuple[int, str, dict]],
            stores: dict[str, dict[str, str]], follow: Follow) -> list[ChainEvent | UndecodableLog]:
    out: list[ChainEvent | UndecodableLog] = []
    moves: list[tuple[int, str, int, str, int]] = []  # (idx, kind, batch, owner, amount)
    for idx, kind, ev in fa:
        try:
            d = ev.get("data")
            if not isinstance(d, dict) or set(d) != {"store", "amount"}:
                raise MoveValueError(f"{kind} data is not {{store, amount}}")
            store, amount = address(d["store"]), uint("u64", d["amount"])
        except MoveValueError as exc:
            out.append(UndecodableLog(chain, "CarbonCredit", version, tx_hash, tx_hash, idx, f"fungible_asset::{exc}"))
            continue
        info = stores.get(store, {})
        batch = follow.fa_batches.get(info.get("metadata", ""))
        if batch is None:
            continue  # another asset (or one whose store this transaction did not write): not followed
        if "owner" not in info:
            out.append(UndecodableLog(chain, "CarbonCredit", version, tx_hash, tx_hash, idx,
                                      f"fungible_asset::{kind}: owner of store {store} not in the transaction's changes"))
            continue
        moves.append((idx, kind, batch, info["owner"], amount))
    used: set[int] = set()
    for i, (idx, kind, batch, owner, amount) in enumerate(moves):
        if i in used:
            continue
        used.add(i)
        src, dst, at = (owner, ZERO, idx) if kind == "Withdraw" else (ZERO, owner, idx)
        if kind == "Withdraw":  # pair with the next deposit of the same asset and amount: a transfer
            j = next((j for j in range(i + 1, len(moves)) if j not in used and moves[j][1] == "Deposit"
                      and moves[j][2] == batch and moves[j][4] == amount), None)
            if j is not None:
                used.add(j)
                dst, at = moves[j][3], moves[j][0]
        out.append(ChainEvent(chain, "CarbonCredit", "TransferSingle", {"operator": sender, "from": src, "to": dst,
                                                                        "id": batch, "value": amount},
                              version, tx_hash, ts, tx_hash, at, "0x1::fungible_asset"))
    return sorted(out, key=lambda e: e.log_index)
