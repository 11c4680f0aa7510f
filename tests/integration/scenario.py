"""A random protocol scenario on a real chain, and the ground truth recomputed from that chain.

`run_scenario(w3, deployment, actions=300, seed=1)` performs random but mostly valid protocol actions from
anvil's unlocked accounts (reverts are counted and skipped). `ground_truth(w3, deployment)` rebuilds every
derived table from contract views, balances and event logs (decoded by web3, not by the indexer);
`indexed_state(db_url, chain)` reads the same shape from the indexer's tables, so a test is one `==`.
The GraphQL engineer can use `run_scenario` to produce real indexed data.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from web3 import Web3
from web3.exceptions import ContractLogicError, Web3RPCError

from tests import seeds

ZERO = "0x" + "0" * 40
ZERO32 = "0x" + "0" * 64
ORDER_STATUS = ["none", "created", "funded", "shipped", "delivered", "disputed", "resolved", "cancelled"]


def _h(b: Any) -> str:
    return "0x" + bytes(b).hex() if isinstance(b, (bytes, bytearray)) else str(b).lower()


@dataclass
class GroundTruth:
    batches: dict[int, tuple] = field(default_factory=dict)
    holdings: dict[tuple[str, int], tuple[int, int, int]] = field(default_factory=dict)
    listings: dict[int, tuple] = field(default_factory=dict)
    orders: dict[int, tuple] = field(default_factory=dict)
    order_events: list[tuple] = field(default_factory=list)
    retirements: list[tuple] = field(default_factory=list)
    trades: list[tuple] = field(default_factory=list)
    payments: list[tuple] = field(default_factory=list)
    qr_payments: list[tuple] = field(default_factory=list)
    qr_settlements: list[tuple] = field(default_factory=list)
    anchors: list[tuple] = field(default_factory=list)
    ledger: list[tuple] = field(default_factory=list)
    mints: list[tuple] = field(default_factory=list)

    def diff(self, other: GroundTruth) -> dict[str, Any]:
        """Per field, what differs (empty when equal) — readable assertion messages."""
        out = {}
        for name in self.__dataclass_fields__:
            a, b = getattr(self, name), getattr(other, name)
            if a != b:
                if isinstance(a, dict):
                    keys = set(a) | set(b)
                    out[name] = {k: (a.get(k), b.get(k)) for k in sorted(keys, key=str) if a.get(k) != b.get(k)}
                else:
                    out[name] = {"only_left": sorted(set(a) - set(b))[:5], "only_right": sorted(set(b) - set(a))[:5]}
        return out


# --------------------------------------------------------------------------- the driver


class _Driver:
    def __init__(self, w3: Web3, dep: Any, seed: int) -> None:
        self.w3, self.rng = w3, seeds.rng(seed)
        self.c = {n: dep.contract(w3, n) for n in ("CarbonCredit", "Marketplace", "Escrow", "QRPayment", "IoTAnchor")}
        accts = w3.eth.accounts
        self.admin, self.users = accts[0], accts[1:7]
        self.bal: dict[tuple[str, int], int] = defaultdict(int)
        self.batches = 0
        self.listings: dict[int, list] = {}
        self.orders: dict[int, list] = {}
        self.qr: list[bytes] = []
        self.approved: set[str] = set()
        self.n = 0
        self.ok = self.reverted = 0

    def send(self, fn: Any, sender: str, value: int = 0) -> bool:
        try:
            fn.transact({"from": sender, "value": value})
            self.ok += 1
            return True
        except (ContractLogicError, Web3RPCError, ValueError):
            self.reverted += 1
            return False

    def uniq(self) -> bytes:
        self.n += 1
        return Web3.keccak(text=f"{self.rng.random()}-{self.n}")

    def holders(self) -> list[tuple[str, int]]:
        return [k for k, v in self.bal.items() if v > 0]

    def act(self) -> None:
        r, cc, mk, es = self.rng, self.c["CarbonCredit"], self.c["Marketplace"], self.c["Escrow"]
        choices = ["batch", "mint", "mint", "transfer", "transfer", "batch_transfer", "retire", "list", "buy",
                   "settle", "cancel_listing", "order", "order_step", "order_step", "qr_pay", "qr_settle", "anchor"]
        kind = r.choice(choices if self.batches else ["batch"])
        held = self.holders()
        if kind == "batch":
            self.batches += 1
            self.send(cc.functions.createBatch(f"PRJ-{self.batches}", 2020 + r.randrange(6), "VM0047", "verra",
                                               f"SN-{self.batches}-{r.randrange(10**6)}", self.uniq()), self.admin)
        elif kind == "mint" or not held:
            to, b, amt = r.choice(self.users), r.randrange(1, self.batches + 1), r.randrange(1, 1000)
            if self.send(cc.functions.mint(to, b, amt, self.uniq()), self.admin):
                self.bal[(to, b)] += amt
        elif kind == "transfer":
            (frm, b) = r.choice(held)
            to, amt = r.choice(self.users), r.randrange(1, self.bal[(frm, b)] + 1)
            if self.send(cc.functions.safeTransferFrom(frm, to, b, amt, b""), frm):
                self.bal[(frm, b)] -= amt
                self.bal[(to, b)] += amt
        elif kind == "batch_transfer":
            frm = r.choice(held)[0]
            ids = [b for (o, b) in held if o == frm][:3]
            amts = [r.randrange(1, self.bal[(frm, b)] + 1) for b in ids]
            to = r.choice(self.users)
            if self.send(cc.functions.safeBatchTransferFrom(frm, to, ids, amts, b""), frm):
                for b, a in zip(ids, amts):
                    self.bal[(frm, b)] -= a
                    self.bal[(to, b)] += a
        elif kind == "retire":
            (frm, b) = r.choice(held)
            amt = r.randrange(1, self.bal[(frm, b)] + 1)
            if self.send(cc.functions.retire(b, amt, f"beneficiary {r.randrange(99)}", "offset"), frm):
                self.bal[(frm, b)] -= amt
        elif kind == "list":
            (frm, b) = r.choice(held)
            if frm not in self.approved and self.send(cc.functions.setApprovalForAll(mk.address, True), frm):
                self.approved.add(frm)
            amt, price = r.randrange(1, self.bal[(frm, b)] + 1), r.randrange(0, 5) * 10**12
            if self.send(mk.functions.list(b, amt, price), frm):
                self.bal[(frm, b)] -= amt
                self.listings[len(self.listings) + 1] = [frm, b, amt, price, True]
        elif kind in ("buy", "settle", "cancel_listing"):
            active = [i for i, l in self.listings.items() if l[4]]
            if not active:
                return
            i = r.choice(active)
            seller, b, rem, price, _ = self.listings[i]
            buyer, amt = r.choice(self.users), r.randrange(1, rem + 1)
            if kind == "buy":
                ok = self.send(mk.functions.buy(i, amt), buyer, amt * price)
            elif kind == "settle":
                ok = self.send(mk.functions.settleOffchain(i, buyer, amt, f"pi_{self.uniq().hex()[:16]}"), self.admin)
            else:
                if self.send(mk.functions.cancel(i), seller):
                    self.bal[(seller, b)] += rem
                    self.listings[i][2], self.listings[i][4] = 0, False
                return
            if ok:
                self.bal[(buyer, b)] += amt
                self.listings[i][2] -= amt
                self.listings[i][4] = self.listings[i][2] > 0
        elif kind == "order":
            buyer, seller = r.sample(self.users, 2)
            if self.send(es.functions.createOrder(seller, r.randrange(1, 10**6), self.uniq()), buyer):
                self.orders[len(self.orders) + 1] = [buyer, seller, "created"]
        elif kind == "order_step":
            live = [i for i, o in self.orders.items() if o[2] in ("created", "funded", "shipped", "disputed")]
            if not live:
                return
            i = r.choice(live)
            buyer, seller, st = self.orders[i]
            if st == "created":
                step = r.choice(["fund", "offchain", "cancel"])
                if step == "fund":
                    amount = es.functions.orders(i).call()[2]
                    ok = self.send(es.functions.fund(i), buyer, amount)
                elif step == "offchain":
                    ok = self.send(es.functions.recordOffchainPayment(i, f"mpesa_{self.uniq().hex()[:12]}"), self.admin)
                else:
                    ok = self.send(es.functions.cancel(i), buyer)
                new = "cancelled" if step == "cancel" else "funded"
            elif st == "funded":
                if r.random() < 0.7:
                    ok, new = self.send(es.functions.markShipped(i, self.uniq()), seller), "shipped"
                else:
                    ok, new = self.send(es.functions.raiseDispute(i, "late"), r.choice([buyer, seller])), "disputed"
            elif st == "shipped":
                if r.random() < 0.7:
                    ok, new = self.send(es.functions.confirmDelivery(i), buyer), "delivered"
                else:
                    ok, new = self.send(es.functions.raiseDispute(i, "damaged"), buyer), "disputed"
            else:
                ok, new = self.send(es.functions.resolveDispute(i, r.random() < 0.5), self.admin), "resolved"
            if ok:
                self.orders[i][2] = new
        elif kind == "qr_pay":
            h = r.choice(self.qr) if self.qr and r.random() < 0.3 else self.uniq()
            if self.send(self.c["QRPayment"].functions.pay(h), r.choice(self.users), r.randrange(1, 10**9)):
                self.qr.append(h)
        elif kind == "qr_settle":
            h = r.choice(self.qr) if self.qr and r.random() < 0.7 else self.uniq()
            self.send(self.c["QRPayment"].functions.settleQROrder(r.choice(self.users), h), self.admin)
        elif kind == "anchor":
            start = r.randrange(10**9)
            self.send(self.c["IoTAnchor"].functions.anchor(self.uniq(), r.randrange(1, 500), start, start + 3600,
                                                          r.randrange(0, 10001)), self.admin)


def run_scenario(w3: Web3, deployment: Any, actions: int = 300, seed: int = 1) -> dict[str, int]:
    """Perform `actions` random protocol actions (one tx each, from anvil's unlocked accounts 0..6); every one of
    them is mined when it returns (`wait_mined`).

    Returns counts {"ok": ..., "reverted": ...}; compute the expected state afterwards with `ground_truth`.
    """
    d = _Driver(w3, deployment, seed)
    for _ in range(actions):
        d.act()
    wait_mined(w3)
    return {"ok": d.ok, "reverted": d.reverted}


def certify(w3: Web3, deployment: Any) -> None:
    """One certificate whatever a scenario's random actions did (a test that needs one asserts on it; some seeds
    retire nothing in a few dozen actions): account 1 is minted 10 of batch 1, which a scenario's first action
    creates, and retires 5."""
    cc = deployment.contract(w3, "CarbonCredit")
    admin, holder = w3.eth.accounts[0], w3.eth.accounts[1]
    for fn, sender in [(cc.functions.mint(holder, 1, 10, b"\x0c" * 32), admin),
                       (cc.functions.retire(1, 5, "certified", "offset"), holder)]:
        assert w3.eth.wait_for_transaction_receipt(fn.transact({"from": sender}), timeout=60)["status"] == 1


def wait_mined(w3: Web3, timeout: float = 60) -> None:
    """Wait until anvil has mined every transaction sent to it. Anvil automines in a task of its own: transact()
    returns once the node holds the transaction, and on a loaded machine its block can come a moment later (with two
    CPU hogs running, 7 of 300 reads of the head right after a send still saw the block before). A test that then
    reads the head once and waits for the indexer to reach exactly that block waits for ever; an anvil_reorg with
    the transaction still pending can corrupt anvil's chain."""
    deadline = time.monotonic() + timeout
    while w3.provider.make_request("txpool_status", [])["result"]["pending"] not in ("0x0", 0):
        assert time.monotonic() < deadline, "anvil's transaction pool never emptied"
        time.sleep(0.02)


# --------------------------------------------------------------------------- ground truth from the chain


def _logs(contract: Any, event: str, to_block: Any) -> list[Any]:
    return list(getattr(contract.events, event).get_logs(from_block=0, to_block=to_block))


def ground_truth(w3: Web3, deployment: Any, block: Any = "latest") -> GroundTruth:
    """Every derived table, from views, balances and web3-decoded logs at `block`."""
    c = {n: deployment.contract(w3, n) for n in ("CarbonCredit", "Marketplace", "Escrow", "QRPayment", "IoTAnchor")}
    cc, mk, es = c["CarbonCredit"], c["Marketplace"], c["Escrow"]
    market = mk.address.lower()
    gt = GroundTruth()
    call = {"block_identifier": block}
    for b in range(1, cc.functions.batchCount().call(**call) + 1):
        m = cc.functions.batches(b).call(**call)
        retired = cc.functions.totalRetired(b).call(**call)
        gt.batches[b] = (m[0], m[1], m[2], m[3], m[4], _h(m[5]), cc.functions.totalSupply(b).call(**call) + retired, retired)
    owners: set[tuple[str, int]] = set()
    sale_txs = {_h(ev.transactionHash) for ev in _logs(mk, "Sold", block)}

    def kind(tx: str, frm: str, to: str) -> str:
        if frm == ZERO:
            return "mint"
        if to == ZERO:
            return "burn"
        if to == market:
            return "list"
        if frm == market:
            return "sale" if tx in sale_txs else "unlist"
        return "transfer"

    for ev in _logs(cc, "TransferSingle", block):
        a, tx = ev.args, _h(ev.transactionHash)
        frm, to = a["from"].lower(), a.to.lower()
        gt.ledger.append((tx, ev.logIndex, 0, a.id, frm, to, a.value, kind(tx, frm, to)))
        owners |= {(frm, a.id), (to, a.id)}
    for ev in _logs(cc, "TransferBatch", block):
        a, tx = ev.args, _h(ev.transactionHash)
        frm, to = a["from"].lower(), a.to.lower()
        for seq, (i, v) in enumerate(zip(a.ids, getattr(a, "values"))):
            gt.ledger.append((tx, ev.logIndex, seq, i, frm, to, v, kind(tx, frm, to)))
            owners |= {(frm, i), (to, i)}
    retired_by: dict[tuple[str, int], int] = defaultdict(int)
    for ev in _logs(cc, "Retired", block):
        a = ev.args
        gt.retirements.append((a.certificateId, a.holder.lower(), a.batchId, a.amount, a.beneficiary, a.reason, _h(ev.transactionHash)))
        retired_by[(a.holder.lower(), a.batchId)] += a.amount
    for ev in _logs(cc, "Minted", block):
        gt.mints.append((_h(ev.transactionHash), ev.logIndex, ev.args.to.lower(), ev.args.batchId, ev.args.amount))
    listed: dict[tuple[str, int], int] = defaultdict(int)
    amount_listed = {ev.args.listingId: ev.args.amount for ev in _logs(mk, "Listed", block)}
    sold: dict[int, int] = defaultdict(int)
    for ev in _logs(mk, "Sold", block):
        a = ev.args
        sold[a.listingId] += a.amount
        gt.trades.append((_h(ev.transactionHash), ev.logIndex, a.listingId, a.buyer.lower(), a.seller.lower(), a.batchId,
                          a.amount, a.pricePerUnit, a.paymentRef or None))
        if a.paymentRef:
            gt.payments.append(("Marketplace", a.paymentRef, a.listingId))
    cancelled = {ev.args.listingId for ev in _logs(mk, "Cancelled", block)}
    for i in range(1, mk.functions.listingCount().call(**call) + 1):
        seller, b, remaining, price, active = mk.functions.listings(i).call(**call)
        status = "active" if active else ("cancelled" if i in cancelled else "sold_out")
        gt.listings[i] = (seller.lower(), b, price, amount_listed[i], remaining, sold[i], status)
        if active:
            listed[(seller.lower(), b)] += remaining
    for owner, b in owners | set(listed) | set(retired_by):
        if owner in (ZERO, market):
            continue
        row = (cc.functions.balanceOf(Web3.to_checksum_address(owner), b).call(**call), listed[(owner, b)], retired_by[(owner, b)])
        if any(row):
            gt.holdings[(owner, b)] = row
    refs, refunded = {}, {}
    for name in ("OrderCreated", "Funded", "Shipped", "Delivered", "Disputed", "Resolved", "Cancelled"):
        for ev in _logs(es, name, block):
            gt.order_events.append((_h(ev.transactionHash), ev.logIndex, ev.args.orderId, name))
            if name == "Funded" and ev.args.paymentRef:
                refs[ev.args.orderId] = ev.args.paymentRef
                gt.payments.append(("Escrow", ev.args.paymentRef, ev.args.orderId))
            if name == "Resolved":
                refunded[ev.args.orderId] = ev.args.refundedBuyer
    for i in range(1, es.functions.orderCount().call(**call) + 1):
        buyer, seller, amount, meta, tracking, status, offchain = es.functions.orders(i).call(**call)
        gt.orders[i] = (buyer.lower(), seller.lower(), amount, _h(meta), ORDER_STATUS[status], offchain, refs.get(i),
                        _h(tracking), refunded.get(i))
    for ev in _logs(c["QRPayment"], "Paid", block):
        gt.qr_payments.append((_h(ev.transactionHash), ev.logIndex, _h(ev.args.orderHash), ev.args.payer.lower(), ev.args.amount))
    for ev in _logs(c["QRPayment"], "Settled", block):
        gt.qr_settlements.append((_h(ev.args.orderDataHash), ev.args.beneficiary.lower(), ev.args.amount))
    iot = c["IoTAnchor"]
    for i in range(1, iot.functions.anchorCount().call(**call) + 1):
        a = iot.functions.anchors(i).call(**call)
        gt.anchors.append((i, _h(a[0]), a[1], a[2], a[3], a[4]))
    return _sorted(gt)


def _sorted(gt: GroundTruth) -> GroundTruth:
    for name, v in vars(gt).items():
        if isinstance(v, list):
            v.sort(key=repr)
    return gt


# --------------------------------------------------------------------------- the same shape from the indexer


def indexed_state(db_url: str, chain: str) -> GroundTruth:
    """The indexer's current derived state, shaped like `ground_truth`."""
    import psycopg

    from store.engine import libpq_url

    gt = GroundTruth()
    with psycopg.connect(libpq_url(db_url)) as conn:
        q = lambda sql: [tuple(int(x) if hasattr(x, "as_integer_ratio") and not isinstance(x, (bool, float)) else x
                               for x in r) for r in conn.execute(sql, {"c": chain}).fetchall()]  # noqa: E731
        cur = " FROM {} WHERE chain = %(c)s AND valid_to IS NULL"
        for r in q("SELECT batch_id, project_id, vintage, methodology, registry, serial_number, metadata_hash, "
                   "total_minted, total_retired" + cur.format("credit_batch")):
            gt.batches[r[0]] = r[1:]
        for r in q("SELECT owner, batch_id, tradable, listed, retired" + cur.format("holding")):
            if any(r[2:]):
                gt.holdings[(r[0], r[1])] = r[2:]
        for r in q("SELECT listing_id, seller, batch_id, price_per_unit, amount_listed, amount_remaining, amount_sold, "
                   "status" + cur.format("listing")):
            gt.listings[r[0]] = r[1:]
        for r in q("SELECT order_id, buyer, seller, amount, metadata_hash, status, funded_offchain, payment_ref, "
                   "coalesce(tracking_hash, '" + ZERO32 + "'), refunded_buyer" + cur.format("escrow_order")):
            gt.orders[r[0]] = r[1:]
        w = " WHERE chain = %(c)s"
        gt.order_events = q("SELECT tx_hash, log_index, order_id, event FROM order_event" + w)
        gt.retirements = q("SELECT certificate_id, holder, batch_id, amount, beneficiary, reason, tx_hash FROM retirement" + w)
        gt.trades = q("SELECT tx_hash, log_index, listing_id, buyer, seller, batch_id, amount, price_per_unit, payment_ref "
                      "FROM trade" + w)
        gt.payments = q("SELECT contract, payment_ref, target_id FROM offchain_payment" + w)
        gt.qr_payments = q("SELECT tx_hash, log_index, order_hash, payer, amount FROM qr_payment" + w)
        gt.qr_settlements = q("SELECT order_data_hash, beneficiary, amount FROM qr_settlement" + w)
        gt.anchors = q("SELECT anchor_id, root, leaf_count, window_start, window_end, quality_score FROM iot_anchor" + w)
        gt.ledger = q("SELECT tx_hash, log_index, seq, batch_id, from_addr, to_addr, amount, kind FROM ledger_entry" + w)
        gt.mints = q("SELECT tx_hash, log_index, to_addr, batch_id, amount FROM mint_event" + w)
    return _sorted(gt)


# --------------------------------------------------------------------------- wiring for tests and tools


def deploy(w3: Web3) -> Any:
    """Deploy the protocol from anvil's account 0 (which gets every role)."""
    from chains.evm.deploy import deploy_protocol

    return deploy_protocol(w3, w3.eth.accounts[0])


def settings_for(rpc_url: str, deployment: Any, db_url: str, chain: str = "dev", **chain_kw: Any) -> Any:
    """Settings indexing `deployment` on `rpc_url` into `db_url` (anvil: depth-based finality, fast polling)."""
    from core.config import ChainSettings, ContractSettings, Settings

    kw = {"finality_depth": 5, "use_finalized_tag": False, "poll_interval_s": 0.05, "request_timeout_s": 5.0, **chain_kw}
    contracts = {n: ContractSettings(address=c.address, start_block=c.block_number)
                 for n, c in deployment.contracts.items()}
    return Settings(database={"url": db_url}, chains={chain: ChainSettings(rpc_url=rpc_url, contracts=contracts, **kw)})


def index_env(settings: Any) -> dict[str, str]:
    """Environment for a `carbonledger index` subprocess with these settings (no config file needed)."""
    import json
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("CARBONLEDGER_")}
    env["CARBONLEDGER_DATABASE_URL"] = settings.database.url
    env["CARBONLEDGER_CHAINS"] = json.dumps({n: c.model_dump(mode="json") for n, c in settings.chains.items()})
    # An empty config file, so a carbonledger.toml in the working directory cannot add chains.
    import tempfile

    fd, path = tempfile.mkstemp(suffix=".toml", prefix="cl-index-")
    os.close(fd)
    env["CARBONLEDGER_CONFIG"] = path
    return env


def dump(db_url: str) -> dict[str, list[tuple]]:
    """Every indexer-written table, sorted, minus what legitimately depends on timing (wall clocks, which
    blocks happen to end a backfill range in indexed_block, the finalized mark)."""
    import psycopg

    from indexer.tables import EVENTS, VERSIONED
    from store.engine import libpq_url

    out = {}
    with psycopg.connect(libpq_url(db_url)) as conn:
        for name, lay in {**EVENTS, **VERSIONED}.items():
            out[name] = sorted(conn.execute(f"SELECT {', '.join(lay.columns)} FROM {name}").fetchall(), key=repr)
        out["cursor"] = conn.execute("SELECT chain, block_number, block_hash FROM indexer_cursor ORDER BY chain").fetchall()
    return out
