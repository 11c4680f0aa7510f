"""Pure mapping of one Substrate block (decoded `System.Events` + its extrinsics) onto the protocol's neutral events.

The Assets pallet is the credit ledger: one asset id per credit batch (configured: `Follow.assets`), its events
mapped onto CarbonCredit's, with the same argument names, so handlers, tables and the API stay family-blind:

| Substrate                                          | neutral events (at the Substrate event's position)     |
|----------------------------------------------------|--------------------------------------------------------|
| Assets.Created / ForceCreated (followed asset)     | BatchCreated (metadata from the asset mapping)          |
| Assets.Issued{asset_id, owner, total_supply}       | TransferSingle(0 -> owner) + Minted (verificationHash   |
|                                                    | from a `mint` record in the extrinsic, else zero)       |
| Assets.Transferred / TransferredApproved           | TransferSingle(from -> to)                              |
| ... to the retirement account                      | TransferSingle(from -> 0) + Retired (beneficiary and    |
|                                                    | reason from the holder's `retire` record in the         |
|                                                    | same extrinsic)                                         |
| Assets.Burned{owner} (owner not the retirement     | TransferSingle(owner -> 0), + Retired when the          |
| account)                                           | extrinsic carries a `retire` record                     |
| Assets.Burned of the retirement account            | nothing: those credits were retired when they arrived   |
| System.Remarked of an `anchor` record from an      | IoTAnchor.Anchored                                      |
| anchoring account                                  |                                                         |

Retirement: only the asset's admin may `assets.burn`, so a holder retires by moving credits to the retirement
account (a keyless account: nobody can move them out) with a `retire` record in the same `utility.batch_all`;
the admin may later burn that account's balance, which changes nothing indexed. Certificate and anchor ids are
`block << 32 | event index` (unique, in chain order). One Substrate event may become two neutral events (rows of
different tables); both sit at its position. Anything followed that cannot be mapped (events that do not decode,
a malformed or unmatched record, a retirement of an asset that is not a credit batch) becomes an UndecodableLog,
recorded as an indexing error, never an exception.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from chains.base import Block, ChainEvent, UndecodableLog
from chains.substrate.records import Record, RecordError, parse
from chains.substrate.runtime import Runtime, blake2_256

ZERO = "0x" + "0" * 40  # the protocol's "nobody" (mint source, burn target), as the handlers know it
ZERO_HASH = "0x" + "0" * 64
ASSET_EVENTS = frozenset({"Created", "ForceCreated", "Issued", "Transferred", "TransferredApproved", "Burned"})


@dataclass(frozen=True)
class BatchInfo:
    """Registry details of the credit batch an asset id stands for."""

    project_id: str
    vintage: int
    methodology: str
    registry: str
    serial_number: str
    metadata_hash: str = ZERO_HASH


@dataclass(frozen=True)
class Follow:
    """What the reader follows on one chain."""

    assets: Mapping[int, BatchInfo]
    retirement_account: str  # 0x-hex public key
    anchor_senders: frozenset[str] = field(default_factory=frozenset)  # 0x-hex public keys
    ink: Mapping[str, Any] = field(default_factory=dict)  # 0x-hex contract account -> ink.FollowedContract


def _account(v: Any) -> str:
    if isinstance(v, str) and len(v) == 66 and v[:2] == "0x":
        return v.lower()
    raise ValueError(f"not a 32-byte account: {str(v)[:80]!r}")


def _amount(v: Any) -> int:
    if type(v) is not int or v < 0:
        raise ValueError(f"not an amount: {str(v)[:80]!r}")
    return v


def wanted(records: Sequence[Mapping[str, Any]], follow: Follow) -> bool:
    """Whether the block has anything this chain follows (then the reader fetches its body)."""
    for r in records:
        mod, name = r.get("module_id"), r.get("event_id")
        if mod == "System" and name == "Remarked":
            return True
        if mod == "Assets" and name in ASSET_EVENTS:
            return True
        if follow.ink and _emitted(r, follow) is not None:
            return True
    return False


def _bytes_readings(v: Any) -> list[bytes]:
    """The bytes a decoded Vec<u8> may stand for: 0x-hex, or the UTF-8 text scalecodec made of them (both, in that
    order, when text happens to look like hex)."""
    if not isinstance(v, str):
        return []
    out = []
    if v[:2] == "0x":
        try:
            out.append(bytes.fromhex(v[2:]))
        except ValueError:
            pass
    out.append(v.encode())
    return out


def _emitted(r: Mapping[str, Any], follow: Follow) -> tuple[str, Any, list[str]] | None:
    """(contract, data, topics) of a `Contracts.ContractEmitted` record of a followed ink! contract, else None. The
    pallet names its fields in newer runtimes ({contract, data}) and not in older ones (a tuple)."""
    if r.get("module_id") != "Contracts" or r.get("event_id") != "ContractEmitted":
        return None
    attrs = r.get("attributes")
    if isinstance(attrs, dict):
        contract, data = attrs.get("contract"), attrs.get("data")
    elif isinstance(attrs, (list, tuple)) and len(attrs) == 2:
        contract, data = attrs
    else:
        return None
    contract = str(contract).lower()
    if contract not in follow.ink:
        return None
    topics = r.get("topics")
    return contract, data, [str(t) for t in topics] if isinstance(topics, (list, tuple)) else []


def remark_candidates(call: Any) -> list[bytes]:
    """Every `remark_with_event` argument in a decoded call tree (through batch, batch_all, proxy, multisig...).
    scalecodec gives Bytes as text when they are UTF-8, else as 0x-hex, so both readings are candidates: the hash
    in the event decides which bytes were remarked."""
    out: list[bytes] = []
    stack = [call]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            if node.get("call_function") == "remark_with_event" and node.get("call_module") == "System":
                for arg in node.get("call_args") or ():
                    v = arg.get("value") if isinstance(arg, dict) else None
                    if isinstance(v, str):
                        out.append(v.encode())
                        if v[:2] == "0x":
                            try:
                                out.append(bytes.fromhex(v[2:]))
                            except ValueError:
                                pass
            else:
                stack.extend(node.values())
    return out


@dataclass
class _Extrinsic:
    index: int
    tx_hash: str
    signer: str | None = None
    candidates: dict[str, bytes] = field(default_factory=dict)  # remark hash -> bytes
    retire: tuple[Record, str] | None = None  # (record, its sender)
    mint: Record | None = None
    followed: bool = False  # has an event of a followed asset
    problem: str | None = None  # why its body could not be read


def map_block(chain: str, block: Block, records: Sequence[Mapping[str, Any]], extrinsics: Sequence[str] | None,
              runtime: Runtime | None, follow: Follow) -> list[ChainEvent | UndecodableLog]:
    """The neutral events of one block, in position order; `extrinsics` are the body's 0x-hex extrinsics (None
    when `wanted` said the block needs none)."""
    out: list[ChainEvent | UndecodableLog] = []

    def error(idx: int, tx: str, contract: str, msg: str) -> None:
        out.append(UndecodableLog(chain, contract, block.number, block.hash, tx, idx, msg[:500]))

    def event(contract: str, name: str, args: dict[str, Any], idx: int, x: _Extrinsic | None, pallet: str) -> None:
        out.append(ChainEvent(chain, contract, name, args, block.number, block.hash, block.timestamp,
                              x.tx_hash if x else block.hash, idx, pallet, x.index if x else None))

    exts: dict[int, _Extrinsic] = {}

    def ext(i: int) -> _Extrinsic:
        x = exts.get(i)
        if x is None:
            raw = extrinsics[i] if extrinsics is not None and 0 <= i < len(extrinsics) else None
            if raw is None:
                x = exts[i] = _Extrinsic(i, block.hash, problem=f"extrinsic {i} is not in the block body")
                return x
            try:
                body = bytes.fromhex(raw[2:]) if isinstance(raw, str) and raw[:2] == "0x" else None
            except ValueError:
                body = None
            if body is None:
                x = exts[i] = _Extrinsic(i, block.hash, problem=f"extrinsic {i} of the block body is not 0x-hex")
                return x
            x = exts[i] = _Extrinsic(i, "0x" + blake2_256(body).hex())
            try:
                if runtime is None:
                    raise ValueError("no runtime")
                dec = runtime.decode_extrinsic(raw)
                addr = dec.get("address")
                x.signer = addr.lower() if isinstance(addr, str) and len(addr) == 66 else None
                for b in remark_candidates(dec.get("call")):
                    x.candidates["0x" + blake2_256(b).hex()] = b
            except ValueError as exc:
                x.problem = str(exc)
        return x

    # Pass 1: which extrinsics hold followed asset events; their records.
    for idx, r in enumerate(records):
        phase_ext = r.get("extrinsic_idx") if r.get("phase") == "ApplyExtrinsic" else None
        mod, name, attrs = r.get("module_id"), r.get("event_id"), r.get("attributes")
        if mod == "Assets" and name in ASSET_EVENTS and isinstance(attrs, dict) and phase_ext is not None:
            dst = str(attrs.get("to", attrs.get("destination", ""))).lower()
            if attrs.get("asset_id") in follow.assets or dst == follow.retirement_account:
                ext(phase_ext).followed = True
        if follow.ink and phase_ext is not None and _emitted(r, follow) is not None:
            ext(phase_ext).followed = True
    for idx, r in enumerate(records):
        if not (r.get("module_id") == "System" and r.get("event_id") == "Remarked"):
            continue
        attrs = r.get("attributes") or {}
        i = r.get("extrinsic_idx") if r.get("phase") == "ApplyExtrinsic" else None
        if i is None:
            continue
        sender, h = str(attrs.get("sender", "")).lower(), str(attrs.get("hash", "")).lower()
        x = ext(i)
        ours = x.followed or sender in follow.anchor_senders
        if x.problem is not None:
            if ours:
                error(idx, x.tx_hash, "System", f"Remarked: block body unreadable: {x.problem}")
            continue
        raw = x.candidates.get(h)
        if raw is None:
            if ours:
                error(idx, x.tx_hash, "System", f"Remarked {h[:18]}: no remark in extrinsic {block.number}-{i} has this hash")
            continue
        try:
            rec = parse(raw)
        except RecordError as exc:
            if ours:  # anyone can remark: others' malformed records are not ours to record
                error(idx, x.tx_hash, "System", f"malformed carbonledger record: {exc}")
            continue
        if rec is None:
            continue
        if rec.kind == "anchor":
            if sender not in follow.anchor_senders:
                continue  # anyone can remark; only the configured anchoring accounts anchor
            f = rec.fields
            event("IoTAnchor", "Anchored", {"anchorId": block.number << 32 | idx, "root": f["root"],
                                            "leafCount": f["leafCount"], "windowStart": f["windowStart"],
                                            "windowEnd": f["windowEnd"], "qualityScore": f["qualityScore"]},
                  idx, x, "System")
        elif rec.kind == "retire":
            if x.retire is not None:
                error(idx, x.tx_hash, "System", "a second retire record in one extrinsic (the first one applies)")
            else:
                x.retire = (rec, sender)
        elif rec.kind == "mint" and x.mint is None:
            x.mint = rec

    # Pass 2: the asset events, in order.
    for idx, r in enumerate(records):
        mod, name, attrs = r.get("module_id"), r.get("event_id"), r.get("attributes")
        if mod != "Assets" or name not in ASSET_EVENTS or not isinstance(attrs, dict):
            continue
        asset = attrs.get("asset_id")
        i = r.get("extrinsic_idx") if r.get("phase") == "ApplyExtrinsic" else None
        to_retire = name in ("Transferred", "TransferredApproved") and \
            str(attrs.get("to" if name == "Transferred" else "destination", "")).lower() == follow.retirement_account
        if asset not in follow.assets and not to_retire:
            continue
        x = ext(i) if i is not None else None
        tx = x.tx_hash if x else block.hash
        if asset not in follow.assets:
            error(idx, tx, "CarbonCredit", f"Assets.{name}: credits of asset {asset} were sent to the retirement "
                  f"account, but asset {asset} is not a credit batch (chains.<name>.assets)")
            continue
        operator = (x.signer if x and x.signer else ZERO)
        try:
            if name in ("Created", "ForceCreated"):
                b = follow.assets[asset]
                event("CarbonCredit", "BatchCreated", {
                    "batchId": asset, "projectId": b.project_id, "vintage": b.vintage, "methodology": b.methodology,
                    "registry": b.registry, "serialNumber": b.serial_number, "metadataHash": b.metadata_hash},
                    idx, x, "Assets")
            elif name == "Issued":
                owner, amount = _account(attrs["owner"]), _amount(attrs["total_supply"])
                event("CarbonCredit", "TransferSingle", {"operator": operator, "from": ZERO, "to": owner,
                                                         "id": asset, "value": amount}, idx, x, "Assets")
                vh = x.mint.fields["verificationHash"] if x and x.mint else ZERO_HASH
                event("CarbonCredit", "Minted", {"to": owner, "batchId": asset, "amount": amount,
                                                 "verificationHash": vh}, idx, x, "Assets")
            elif name in ("Transferred", "TransferredApproved"):
                src = _account(attrs["from" if name == "Transferred" else "owner"])
                dst = _account(attrs["to" if name == "Transferred" else "destination"])
                amount = _amount(attrs["amount"])
                if name == "TransferredApproved":
                    operator = _account(attrs["delegate"])
                if dst == follow.retirement_account:
                    _retire(event, x, idx, block, operator, src, asset, amount, holder_signed=True)
                else:
                    event("CarbonCredit", "TransferSingle", {"operator": operator, "from": src, "to": dst,
                                                             "id": asset, "value": amount}, idx, x, "Assets")
            elif name == "Burned":
                owner, amount = _account(attrs["owner"]), _amount(attrs["balance"])
                if owner != follow.retirement_account:
                    _retire(event, x, idx, block, operator, owner, asset, amount, holder_signed=False)
        except (KeyError, ValueError) as exc:
            error(idx, tx, "CarbonCredit", f"Assets.{name}: {type(exc).__name__}: {exc}")
    # Pass 3: events of followed ink! contracts, decoded with each contract's metadata.
    for idx, r in enumerate(records if follow.ink else ()):
        hit = _emitted(r, follow)
        if hit is None:
            continue
        contract, data, topics = hit
        i = r.get("extrinsic_idx") if r.get("phase") == "ApplyExtrinsic" else None
        x = ext(i) if i is not None else None
        tx = x.tx_hash if x else block.hash
        followed = follow.ink[contract]
        got, problem = None, "data is not bytes"
        for n, raw in enumerate(_bytes_readings(data)):  # scalecodec gives Vec<u8> as text when it is UTF-8
            try:
                got, problem = followed.protocol_event(raw, topics), None
                break
            except ValueError as exc:
                if n == 0:  # the first reading's complaint is the one to report
                    problem = str(exc)
        if problem is not None:
            error(idx, tx, followed.role, f"Contracts.ContractEmitted by {contract[:18]}…: {problem}")
            continue
        if got is not None:
            event(followed.role, got[0], got[1], idx, x, "Contracts")
    out.sort(key=lambda e: e.log_index)  # stable: the two events of one position keep their order
    return out


def _retire(event: Any, x: _Extrinsic | None, idx: int, block: Block, operator: str, holder: str, asset: int,
            amount: int, *, holder_signed: bool) -> None:
    """Credits leave circulation: a burn in the ledger, and a certificate when the move is a retirement."""
    event("CarbonCredit", "TransferSingle", {"operator": operator, "from": holder, "to": ZERO, "id": asset,
                                             "value": amount}, idx, x, "Assets")
    rec = x.retire if x else None
    if holder_signed:
        # A transfer to the retirement account is a retirement whatever it carries: the credits can never move
        # again. The beneficiary and reason count only when the holder itself remarked them.
        fields = rec[0].fields if rec is not None and rec[1] == holder else {"beneficiary": "", "reason": ""}
    elif rec is not None:
        fields = rec[0].fields  # the admin burned with a record: a retirement on the holder's behalf
    else:
        return  # a plain burn
    event("CarbonCredit", "Retired", {"certificateId": block.number << 32 | idx, "holder": holder, "batchId": asset,
                                      "amount": amount, "beneficiary": fields["beneficiary"],
                                      "reason": fields["reason"]}, idx, x, "Assets")


def follow_from(settings: Any, chain: str = "?") -> Follow:
    """What a substrate reader follows, from a chain's settings (`core.config.ChainSettings`)."""
    from chains.substrate.accounts import RETIREMENT_ACCOUNT, public_key
    from chains.substrate.ink import load_contracts

    return Follow({i: BatchInfo(a.project_id, a.vintage, a.methodology, a.registry, a.serial_number,
                                a.metadata_hash.lower()) for i, a in settings.assets.items()},
                  public_key(settings.retirement_account) if settings.retirement_account else RETIREMENT_ACCOUNT,
                  frozenset(public_key(a) for a in settings.anchor_senders),
                  load_contracts(settings.ink_contracts, chain))
