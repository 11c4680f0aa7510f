"""`carbonledger verify`: an auditor checks a certificate, an IoT reading or a payment from the chain alone.

Nothing here reads our database. The chain's events are read through the same chain reader the indexer uses
(any family: EVM logs, Substrate events mapped to the protocol's), and the custody chain is rebuilt in memory
by the rule the API documents (graphql/gqlapi/resolvers/provenance_sql.py): start at the retirement's holder
and position; every transfer or sale into an address on the trace before the position it was reached at adds
its sender (for a sale, the seller) with that earlier position; the custody chain is every mint, transfer, sale
and unlisting into a traced address and every listing by one, each before its cut-off, plus the retirement.

This is a second, independent implementation of that rule on purpose: an auditor should not have to trust the
indexer's code any more than its database. With `--api`, the API's provenance is compared event by event and any
difference fails the check.

Checks reported (a check that fails makes the command exit 1):
- found: exactly one `Retired` event with that certificate id on the canonical chain;
- canonical: every event's block hash equals the node's block at that height (re-read after the scan);
- reaches_mint: the custody chain starts with the mint of the credits;
- api (with --api): the API's certificate and provenance equal the chain's; its block is canonical.
Depth below the head is reported per event, and whether the retirement is final (below the node's finalized
block, or `finality_depth` deep); not being final yet is reported, not failed.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

from chains.base import ChainEvent, ChainReader
from core.preflight import OperatorError
from store.serials import consumed_range

ZERO = "0x" + "0" * 40
SCAN_WINDOW = 5000  # blocks per events() call while scanning (the reader splits further as the node requires)


@dataclass
class Movement:
    """One custody step, field for field what the API's ProvenanceEvent says."""

    kind: str  # mint | transfer | list | unlist | sale | auction_settled | burn | retirement
    block_number: int
    block_hash: str
    timestamp: int
    tx_hash: str
    log_index: int
    seq: int
    batch_id: int
    amount: int
    from_addr: str | None
    to_addr: str | None
    verification_hash: str | None = None
    listing_id: int | None = None
    auction_id: int | None = None
    price_per_unit: int | None = None
    payment_ref: str | None = None
    certificate_id: int | None = None
    beneficiary: str | None = None
    reason: str | None = None
    depth: int | None = None  # blocks below the head when checked
    canonical: bool | None = None

    @property
    def pos(self) -> tuple[int, int, int]:
        return (self.block_number, self.log_index, self.seq)

    def key(self) -> tuple[Any, ...]:
        """What an API row must equal (addresses and hashes lowercased, numbers as int)."""
        low = lambda v: v.lower() if isinstance(v, str) else v  # noqa: E731
        return (self.tx_hash.lower(), self.log_index, self.kind, self.block_number, self.block_hash.lower(), self.batch_id,
                self.amount, low(self.from_addr), low(self.to_addr), low(self.verification_hash), self.listing_id,
                self.auction_id, self.price_per_unit, self.payment_ref, self.certificate_id, self.beneficiary,
                self.reason)


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Report:
    subject: str
    chain: str
    head: int | None = None
    checks: list[Check] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    events: list[Movement] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def check(self, name: str, ok: bool, detail: str) -> bool:
        self.checks.append(Check(name, ok, detail))
        return ok

    def to_json(self) -> dict[str, Any]:
        return {"subject": self.subject, "chain": self.chain, "ok": self.ok, "head": self.head,
                "checks": [asdict(c) for c in self.checks], "facts": self.facts,
                "events": [{k: v for k, v in asdict(m).items()} for m in self.events]}


# --------------------------------------------------------------------------- reading the chain


class UnverifiableHistory(OperatorError):
    """A followed contract emitted a log that does not decode: the history has a hole an auditor cannot vouch for."""


def scan(reader: ChainReader, from_block: int, to_block: int, window: int = SCAN_WINDOW) -> Iterable[ChainEvent]:
    """Decoded protocol events in [from_block, to_block], in chain order; an undecodable log of a followed contract
    stops the check (an auditor cannot vouch for a history with a hole in it)."""
    start = from_block
    while start <= to_block:
        end = min(to_block, start + window - 1)
        for ev in reader.events(start, end):
            if not isinstance(ev, ChainEvent):
                raise UnverifiableHistory(
                    f"block {ev.block_number}, tx {ev.tx_hash}: a {ev.contract} log cannot be decoded "
                    f"({str(ev.error)[:200]}); the custody chain cannot be rebuilt past it",
                    "check that --contract names the protocol's own contracts (an address of another contract, or "
                    "a contract built from other sources, emits logs this ABI does not decode); the indexer records "
                    "the same log in its indexing_error table")
            yield ev
        start = end + 1


def movements(events: Iterable[ChainEvent], market: str | None, auction: str | None = None
              ) -> tuple[list[Movement], list[ChainEvent], dict[int, dict]]:
    """(custody rows, Retired events, batch facts by id) from protocol events in chain order. A credit transfer out of
    the marketplace or the auction contract is a sale, an auction settlement or an unlisting, decided by the Sold,
    AuctionSettled or Cancelled that follows it in the same tx (none: a plain transfer, as the indexer says)."""
    rows: list[Movement] = []
    retired: list[ChainEvent] = []
    batches: dict[int, dict] = {}
    pending: dict[str, list[Movement]] = {}
    listed: dict[tuple[str, int], dict] = {}
    minted: dict[tuple[str, int, str], str] = {}
    sold: dict[str, list[dict]] = {}
    escrows = {a.lower() for a in (market, auction) if a}
    settled: dict[str, list[dict]] = {}
    for ev in events:
        a, name = ev.args, f"{ev.contract}:{ev.name}"
        if name in ("CarbonCredit:TransferSingle", "CarbonCredit:TransferBatch"):
            pairs = [(a["id"], a["value"])] if ev.name == "TransferSingle" else list(zip(a["ids"], a["values"]))
            src, dst = a["from"].lower(), a["to"].lower()
            for seq, (batch, value) in enumerate(pairs):
                kind = ("mint" if src == ZERO else "burn" if dst == ZERO else "list" if dst in escrows
                        else "pending" if src in escrows else "transfer")
                m = Movement(kind, ev.block_number, ev.block_hash, ev.block_timestamp, ev.tx_hash, ev.log_index, seq,
                             int(batch), int(value), src, dst)
                rows.append(m)
                if kind == "pending":
                    pending.setdefault(ev.tx_hash, []).append(m)
        elif name == "CarbonCredit:Minted":
            minted[(ev.tx_hash, int(a["batchId"]), a["to"].lower())] = a["verificationHash"]
        elif name == "CarbonCredit:BatchCreated":
            batches[int(a["batchId"])] = {k: a[k] for k in ("projectId", "vintage", "methodology", "registry",
                                                            "serialNumber", "metadataHash")}
        elif name == "CarbonCredit:Retired":
            retired.append(ev)
        elif name == "Marketplace:Listed":
            listed.setdefault((ev.tx_hash, int(a["batchId"])), {"listing_id": int(a["listingId"]),
                                                                "price_per_unit": int(a["pricePerUnit"])})
        elif name in ("Marketplace:Sold", "Marketplace:Cancelled"):
            kind = "sale" if ev.name == "Sold" else "unlist"
            for m in pending.pop(ev.tx_hash, []):
                m.kind = kind
            if kind == "sale":
                sold.setdefault(ev.tx_hash, []).append(dict(a))
        elif name == "Auction:AuctionSettled":
            won = a["winner"].lower() != ZERO
            for m in pending.pop(ev.tx_hash, []):
                m.kind = "auction_settled" if won else "unlist"
            if won:
                settled.setdefault(ev.tx_hash, []).append(dict(a))
    for m in rows:  # the API's joins: a sale's trade (first by log index), a listing's Listed, a mint's Minted
        if m.kind == "pending":
            m.kind = "transfer"
        if m.kind == "auction_settled":
            t = next((t for t in settled.get(m.tx_hash, []) if int(t["batchId"]) == m.batch_id
                      and t["winner"].lower() == m.to_addr), None)
            if t is not None:
                m.from_addr, m.auction_id, m.price_per_unit = t["seller"].lower(), int(t["auctionId"]), int(t["pricePerUnit"])
                m.payment_ref = t["paymentRef"] or None
        elif m.kind == "sale":
            t = next((t for t in sold.get(m.tx_hash, []) if int(t["batchId"]) == m.batch_id
                      and t["buyer"].lower() == m.to_addr), None)
            if t is not None:
                m.from_addr, m.listing_id, m.price_per_unit = t["seller"].lower(), int(t["listingId"]), int(t["pricePerUnit"])
                m.payment_ref = t["paymentRef"] or None
        elif m.kind == "list" and (info := listed.get((m.tx_hash, m.batch_id))):
            m.listing_id, m.price_per_unit = info["listing_id"], info["price_per_unit"]
        elif m.kind == "mint":
            m.verification_hash = minted.get((m.tx_hash, m.batch_id, m.to_addr))
    return rows, retired, batches


def custody(rows: Sequence[Movement], retirement: ChainEvent) -> list[Movement]:
    """The custody chain of one retirement (the rule in this module's docstring), in chain order."""
    a = retirement.args
    batch, holder = int(a["batchId"]), a["holder"].lower()
    mine = [m for m in rows if m.batch_id == batch]
    cut0 = (retirement.block_number, retirement.log_index, 0)
    traced: set[tuple[str, tuple[int, int, int]]] = {(holder, cut0)}
    todo = [(holder, cut0)]
    while todo:
        addr, cut = todo.pop()
        for m in mine:
            if m.kind in ("transfer", "sale", "auction_settled") and m.to_addr == addr and m.pos < cut:
                nxt = (m.from_addr or "", m.pos)
                if nxt not in traced:
                    traced.add(nxt)
                    todo.append(nxt)
    picked: dict[tuple[str, int, int], Movement] = {}
    for addr, cut in traced:
        for m in mine:
            if m.pos < cut and ((m.kind in ("mint", "transfer", "sale", "auction_settled", "unlist") and m.to_addr == addr)
                                or (m.kind == "list" and m.from_addr == addr)):
                picked[(m.tx_hash, m.log_index, m.seq)] = m
    out = sorted(picked.values(), key=lambda m: m.pos)
    out.append(Movement("retirement", retirement.block_number, retirement.block_hash, retirement.block_timestamp,
                        retirement.tx_hash, retirement.log_index, 0, batch, int(a["amount"]), holder, None,
                        certificate_id=int(a["certificateId"]), beneficiary=a["beneficiary"], reason=a["reason"]))
    return out


def check_canonical(reader: ChainReader, report: Report, rows: Sequence[Movement], finality_depth: int) -> None:
    """Re-read each block under the report's events: its hash at that height, and its depth below the head."""
    head = reader.head()
    report.head = head.number
    finalized = reader.finalized(head, finality_depth)
    hashes: dict[int, str | None] = {}
    for m in rows:
        if m.block_number not in hashes:
            b = reader.block(m.block_number)
            hashes[m.block_number] = b.hash.lower() if b is not None else None
        m.canonical = hashes[m.block_number] == m.block_hash.lower()
        m.depth = head.number - m.block_number
    bad = [m for m in rows if not m.canonical]
    report.check("canonical", not bad, "every event's block is on the node's chain" if not bad else
                 f"{len(bad)} event(s) in blocks the node no longer has at that height, first: block "
                 f"{bad[0].block_number} {bad[0].block_hash}")
    last = max((m.block_number for m in rows), default=head.number)
    report.facts["final"] = last <= finalized
    report.facts["confirmations"] = head.number - last


# --------------------------------------------------------------------------- the API's answer

_API_QUERY = """query Verify($id: BigInt!, $chain: String) {
  certificate(id: $id, chain: $chain) {
    chain txHash logIndex blockNumber blockHash holder beneficiary reason amount batchId serialRange
    provenance { kind txHash logIndex blockNumber blockHash batchId amount fromAddress toAddress verificationHash
                 listingId auctionId pricePerUnit paymentRef certificateId beneficiary reason }
  }
}"""


def fetch_api_certificate(api_url: str, cert_id: int, chain: str | None, timeout_s: float = 30.0) -> dict | None:
    """The API's certificate with its provenance, or None when the API does not know it."""
    import httpx

    url = api_url.rstrip("/")
    url = url if url.endswith("/graphql") else url + "/graphql"
    r = httpx.post(url, json={"query": _API_QUERY, "variables": {"id": str(cert_id), "chain": chain}}, timeout=timeout_s)
    body = r.json() if r.headers.get("content-type", "").startswith("application/json") else None
    if r.status_code != 200 or not isinstance(body, dict) or body.get("errors"):
        errs = body.get("errors") if isinstance(body, dict) else None
        raise ValueError(f"the API at {url} answered {r.status_code}: "
                         f"{(errs[0].get('message') if errs else r.text)[:200]}")
    return (body.get("data") or {}).get("certificate")


def _api_key(e: dict[str, Any]) -> tuple[Any, ...]:
    low = lambda v: v.lower() if isinstance(v, str) else v  # noqa: E731
    num = lambda v: None if v is None else int(v)  # noqa: E731
    return (low(e["txHash"]), int(e["logIndex"]), e["kind"].lower(), int(e["blockNumber"]), low(e["blockHash"]),
            int(e["batchId"]), int(e["amount"]), low(e["fromAddress"]), low(e["toAddress"]), low(e["verificationHash"]),
            num(e["listingId"]), num(e["auctionId"]), num(e["pricePerUnit"]), e["paymentRef"], num(e["certificateId"]),
            e["beneficiary"], e["reason"])


def compare_api(report: Report, api: dict | None, chain_rows: Sequence[Movement] | None,
                reader: ChainReader | None = None) -> None:
    """Fail the `api` check on any difference between the API's certificate and provenance and the chain's."""
    if api is None:
        report.check("api", chain_rows is None, "the API does not know this certificate"
                     + ("" if chain_rows is None else ", the chain does"))
        return
    if reader is not None:  # the API's own block: is it on the node's chain?
        b = reader.block(int(api["blockNumber"]))
        if b is None or b.hash.lower() != api["blockHash"].lower():
            report.check("api_canonical", False, f"the API's certificate is in block {api['blockNumber']} "
                         f"{api['blockHash']}, which is not on the node's chain (reorged out)")
        else:
            report.check("api_canonical", True, "the API's certificate block is on the node's chain")
    if chain_rows is None:
        report.check("api", False, "the API shows a certificate the chain does not have")
        return
    ours = Counter(m.key() for m in chain_rows)
    theirs = Counter(_api_key(e) for e in api.get("provenance") or [])
    only_chain, only_api = ours - theirs, theirs - ours
    if not only_chain and not only_api:
        report.check("api", True, f"the API's provenance equals the chain's ({sum(ours.values())} events)")
        return
    parts = []
    if only_chain:
        k = next(iter(only_chain))
        parts.append(f"{sum(only_chain.values())} event(s) on chain not in the API, first: {k[2]} tx {k[0]} log {k[1]}")
    if only_api:
        k = next(iter(only_api))
        theirs_first = dict(zip(_FIELDS, k))
        same = next((m for m in chain_rows if m.tx_hash.lower() == k[0] and m.log_index == k[1]), None)
        diff = ""
        if same is not None:
            diff = "; differs in " + ", ".join(f"{f}: chain {a!r}, API {b!r}" for f, a, b in
                                                 zip(_FIELDS, same.key(), k) if a != b)
        parts.append(f"{sum(only_api.values())} event(s) in the API not on chain, first: {theirs_first['kind']} tx "
                     f"{k[0]} log {k[1]}{diff}")
    report.check("api", False, "; ".join(parts))


_FIELDS = ("tx_hash", "log_index", "kind", "block_number", "block_hash", "batch_id", "amount", "from", "to",
           "verification_hash", "listing_id", "auction_id", "price_per_unit", "payment_ref", "certificate_id", "beneficiary", "reason")


# --------------------------------------------------------------------------- the checks


def verify_certificate(reader: ChainReader, cert_id: int, *, from_block: int, market: str | None,
                       auction: str | None = None, finality_depth: int = 12, api_url: str | None = None,
                       api_chain: str | None = None) -> Report:
    """Rebuild certificate `cert_id` and its custody chain from the chain; compare with the API if given."""
    report = Report(f"certificate {cert_id}", reader.chain)
    head = reader.head()
    rows, retired, batches = movements(scan(reader, from_block, head.number), market, auction)
    mine = [r for r in retired if int(r.args["certificateId"]) == cert_id]
    api = fetch_api_certificate(api_url, cert_id, api_chain) if api_url else None
    if not report.check("found", len(mine) == 1, f"Retired in block {mine[0].block_number}, tx {mine[0].tx_hash}"
                        if len(mine) == 1 else "no Retired event with this certificate id on the node's chain"
                        if not mine else f"{len(mine)} Retired events carry this certificate id"):
        if api_url:
            compare_api(report, api, None, reader)
        return report
    ret = mine[0]
    a = ret.args
    chain_rows = custody(rows, ret)
    report.events = chain_rows
    report.facts.update({"certificate_id": cert_id, "holder": a["holder"].lower(), "batch_id": int(a["batchId"]),
                         "amount": int(a["amount"]), "beneficiary": a["beneficiary"], "reason": a["reason"],
                         "tx_hash": ret.tx_hash, "log_index": ret.log_index, "block_number": ret.block_number,
                         "block_hash": ret.block_hash, "timestamp": ret.block_timestamp, "contract": ret.address,
                         "batch": batches.get(int(a["batchId"]))})
    # Registry serials, first in first out within the batch (store.serials): the batch's earlier retirements on chain
    before = sum(int(r.args["amount"]) for r in retired if int(r.args["batchId"]) == int(a["batchId"])
                 and (r.block_number, r.log_index) < (ret.block_number, ret.log_index))
    report.facts["serial_range"] = consumed_range((report.facts["batch"] or {}).get("serialNumber"), before,
                                                  int(a["amount"]))
    check_canonical(reader, report, chain_rows, finality_depth)
    mints = [m for m in chain_rows if m.kind == "mint"]
    report.check("reaches_mint", bool(mints), f"custody goes back to {len(mints)} mint(s), verification hash(es) "
                 + ", ".join(sorted({str(m.verification_hash) for m in mints})) if mints else
                 "the custody chain does not reach a mint (scan from an earlier block: --from-block)")
    if api_url:
        compare_api(report, api, chain_rows, reader)
        if api is not None:
            got = api.get("serialRange")
            report.check("api_serials", got == report.facts["serial_range"],
                         f"the API's serial range equals the chain's ({got})" if got == report.facts["serial_range"]
                         else f"serial range: chain {report.facts['serial_range']!r}, API {got!r}")
    return report


def verify_reading(reader: ChainReader, proof: dict[str, Any], anchor_address: str, *, from_block: int,
                   finality_depth: int = 12) -> Report:
    """A reading as `GET /iot/readings/{id}/proof` gives it: its RFC 8785 form gives the leaf, the proof walks to
    the root, and `IoTAnchor.verify(root, leaf, proof)` answers on chain; the root's `Anchored` event is reported."""
    import rfc8785

    from chains.merkle import hash_leaf, verify as walk

    report = Report(f"reading of {proof.get('device_id')} at {proof.get('ts')}", reader.chain)
    canonical = proof.get("canonical")
    try:
        data = json.loads(canonical)
        again = rfc8785.dumps(data).decode()
    except Exception as exc:  # noqa: BLE001 - any unreadable reading fails the check, named
        report.check("canonical_form", False, f"the reading is not JSON: {type(exc).__name__}: {str(exc)[:120]}")
        return report
    report.check("canonical_form", again == canonical and data.get("device_id") == proof.get("device_id")
                 and data.get("ts") == proof.get("ts"),
                 "the reading is in RFC 8785 form and names its device and time" if again == canonical else
                 "the reading is not in RFC 8785 canonical form")
    leaf = "0x" + hash_leaf(canonical.encode()).hex()
    report.check("leaf", leaf == str(proof.get("leaf", "")).lower(), f"leaf {leaf}" if leaf == str(proof.get("leaf", "")).lower()
                 else f"the leaf of this reading is {leaf}, not {proof.get('leaf')}")
    root, siblings = proof.get("root"), proof.get("proof")
    if not isinstance(root, str) or not isinstance(siblings, list):
        report.check("anchored", False, "the reading has no anchor yet (no root or proof)")
        return report
    try:
        root_b = bytes.fromhex(root.removeprefix("0x"))
        sib_b = [bytes.fromhex(s.removeprefix("0x")) for s in siblings]
        if len(root_b) != 32 or any(len(s) != 32 for s in sib_b):
            raise ValueError("root and proof entries must be 32 bytes")
    except (ValueError, AttributeError) as exc:
        report.check("proof", False, f"malformed root or proof: {exc}")
        return report
    report.check("proof", walk(root_b, bytes.fromhex(leaf[2:]), sib_b), "the proof walks from the leaf to the root"
                 if walk(root_b, bytes.fromhex(leaf[2:]), sib_b) else "the proof does not lead from the leaf to the root")
    on_chain = anchor_verify(reader, anchor_address, root_b, bytes.fromhex(leaf[2:]), sib_b)
    report.check("on_chain", on_chain, "IoTAnchor.verify(root, leaf, proof) is true on chain" if on_chain
                 else "IoTAnchor.verify(root, leaf, proof) is false on chain")
    head = reader.head()
    anchors = [ev for ev in scan(reader, from_block, head.number)
               if ev.contract == "IoTAnchor" and ev.name == "Anchored" and str(ev.args["root"]).lower() == root.lower()]
    if anchors:
        ev = anchors[0]
        m = Movement("anchor", ev.block_number, ev.block_hash, ev.block_timestamp, ev.tx_hash, ev.log_index, 0, 0, 0,
                     None, None)
        check_canonical(reader, report, [m], finality_depth)
        report.events = [m]
        report.facts.update({"root": root.lower(), "anchor_id": int(ev.args["anchorId"]), "tx_hash": ev.tx_hash,
                             "block_number": ev.block_number, "leaf": leaf})
    report.check("anchor_event", bool(anchors), "the root's Anchored event is on chain" if anchors
                 else "no Anchored event for this root on the node's chain")
    return report


def anchor_verify(reader: ChainReader, address: str, root: bytes, leaf: bytes, proof: list[bytes]) -> bool:
    """`IoTAnchor.verify(root, leaf, proof)` by eth_call (EVM chains)."""
    from eth_abi import decode, encode
    from eth_utils import keccak

    rpc = getattr(reader, "rpc", None)
    if rpc is None:
        raise ValueError(f"chain {reader.chain}: IoT anchors are verified on EVM chains only")
    data = keccak(text="verify(bytes32,bytes32,bytes32[])")[:4] + encode(["bytes32", "bytes32", "bytes32[]"],
                                                                         [root, leaf, proof])
    out = rpc.call("eth_call", [{"to": address, "data": "0x" + data.hex()}, "latest"])
    return bool(decode(["bool"], bytes.fromhex(str(out).removeprefix("0x")))[0])


def verify_payment(reader: ChainReader, reference: str, *, from_block: int, finality_depth: int = 12) -> Report:
    """Every on-chain write that carries `reference` (Marketplace.Sold, Escrow.Funded): exactly one must exist."""
    report = Report(f"payment {reference}", reader.chain)
    head = reader.head()
    hits = [ev for ev in scan(reader, from_block, head.number) if ev.args.get("paymentRef") == reference]
    rows = [Movement(f"{ev.contract}.{ev.name}", ev.block_number, ev.block_hash, ev.block_timestamp, ev.tx_hash,
                     ev.log_index, 0, int(ev.args.get("batchId") or 0), int(ev.args.get("amount") or 0),
                     ev.args.get("seller") or ev.args.get("payer"), ev.args.get("buyer"), payment_ref=reference,
                     listing_id=int(ev.args["listingId"]) if "listingId" in ev.args else None)
            for ev in hits]
    report.events = rows
    report.check("written_once", len(hits) == 1, f"written once: {hits[0].contract}.{hits[0].name} in tx "
                 f"{hits[0].tx_hash}" if len(hits) == 1 else "no on-chain write carries this reference"
                 if not hits else f"written {len(hits)} times: " + ", ".join(e.tx_hash for e in hits))
    if rows:
        check_canonical(reader, report, rows, finality_depth)
    return report


# --------------------------------------------------------------------------- output


def render(report: Report, console: Any = None) -> None:
    """The report as text for people (rich). Everything taken from the chain (beneficiaries, reasons, references:
    anyone can write them) is escaped and printed on one line, so it can neither break the output nor forge a line
    of it (a beneficiary "x\\n[green]VERIFIED[/]")."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    def safe(v: Any) -> str:
        return escape(" ".join(str(v).split()))  # markup escaped, newlines and other control whitespace folded

    console = console or Console(width=None if sys.stdout.isatty() else 200)  # piped: no 80-column cut
    mark = "[green]VERIFIED[/]" if report.ok else "[red]NOT VERIFIED[/]"
    console.print(f"{mark} {safe(report.subject)} on chain {safe(report.chain)} (head {report.head})")
    for c in report.checks:
        ok = "[green]ok[/]  " if c.ok else "[red]FAIL[/]"
        console.print(f"  {ok} {safe(c.name)}: {safe(c.detail)}", highlight=False)
    if report.facts:
        console.print("  " + safe(", ".join(f"{k}={v}" for k, v in report.facts.items() if k != "batch")), highlight=False)
    if report.events:
        t = Table("block", "depth", "kind", "amount", "from", "to", "tx", "log", "detail", box=None, pad_edge=False)
        for col in t.columns:
            col.overflow = "fold"
        for m in report.events:
            detail = m.verification_hash or m.payment_ref or m.beneficiary or ""
            cells = (str(m.block_number), str(m.depth), m.kind + ("" if m.canonical is not False else " (orphaned)"),
                     str(m.amount), _short(m.from_addr), _short(m.to_addr), _short(m.tx_hash), str(m.log_index),
                     str(detail)[:80])
            t.add_row(*(Text(" ".join(c.split())) for c in cells))  # Text: never read as markup
        console.print(t)


def _short(v: str | None) -> str:
    return "" if not v else v if len(v) <= 14 else f"{v[:8]}…{v[-4:]}"
