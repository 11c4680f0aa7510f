"""`carbonledger demo`: the whole system in one process, then a story driven through its real interfaces.

Embedded Postgres (pgserver) unless a database URL is given, an in-process eth-tester devnet unless an RPC URL is
given; contracts deployed; indexer, oracle and API started as they run in production (threads here instead of
processes). The story's off-chain facts go in where they would in production: the verifier approves trips over
HTTP, the card payment is a PaymentIntent on localstripe (Stripe's API, offline) whose webhook is signed with the
stripe library and posted to the oracle, which re-fetches and checks it against the indexed listing, an M-Pesa STK
push is answered by a local Daraja stand-in speaking Daraja's JSON (Safaricom's sandbox is not reachable here), the car's
telematics unit posts HMAC-signed readings. Wallet actions (list, retire, order, pay) are signed transactions.
Where chopsticks can run, an Asset Hub leg (carbonledger.substrate_leg) repeats the credits on a real Substrate
runtime; an Aptos leg (carbonledger.aptos_leg) repeats them as Move fungible assets on a stand-in fullnode (no Aptos
node runs here), labelled as such.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
from pydantic import SecretStr

from carbonledger import aptos_leg, substrate_leg
from core.devnet import DEVNET_KEYS

log = logging.getLogger("carbonledger.demo")

# The seed design's saving: a petrol car emits ~120 g CO2/km, the EV on this grid ~20 g/km.
ICE_G_PER_KM, EV_G_PER_KM = 120, 20
TRIPS = (("2026-11-18", "Westlands -> JKIA", 24.6), ("2026-11-19", "CBD -> Karen", 17.9),
         ("2026-11-20", "Nairobi -> Thika", 45.2), ("2026-11-21", "Kilimani -> Gigiri", 11.3))
WHSEC = "whsec_carbonledger_demo"
MPESA_SECRET = "demo-callback-secret"
TOKENS = {"verifier": "demo-verifier-token", "reviewer": "demo-reviewer-token", "merchant": "demo-merchant-token",
          "operator": "demo-operator-token", "device": "demo-device-key"}
DEVICE = "ev-telematics-001"
# Demo exchange rates (not market rates), exact integers: 1 USD buys 10^14 wei, 1 KES 10^12 wei.
FIAT_RATES = {"usd": {"decimals": 2, "wei_per_unit": 10**14}, "kes": {"decimals": 2, "wei_per_unit": 10**12}}


def _hex(b: bytes) -> str:
    return "0x" + bytes(b).hex()


def co2_saved_g(km: float) -> int:
    """CO2 saved by one EV trip, in grams: (120 - 20) g/km x distance."""
    return round((ICE_G_PER_KM - EV_G_PER_KM) * km)


@dataclass
class Step:
    what: str
    tx: str | None = None
    detail: str = ""


@dataclass
class Story:
    steps: list[Step] = field(default_factory=list)
    ids: dict[str, Any] = field(default_factory=dict)

    def add(self, what: str, tx: str | None = None, detail: str = "") -> None:
        self.steps.append(Step(what, tx, detail))
        log.info("demo step", extra={"step": what, "tx": tx})


def fresh_database(server_url: str | None, state_dir: Path, name: str = "carbonledger_demo") -> str:
    """A new empty database `name` on the given server (or the embedded one)."""
    from core.database import embedded_url
    from store.engine import libpq_url

    if not name.replace("_", "").isalnum():
        raise ValueError(f"demo database name must be letters, digits and _: {name!r}")
    base = libpq_url(server_url) if server_url else embedded_url(state_dir / "pgdata", "postgres")
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    if "?" in base:
        head, query = base.split("?", 1)
        return head.rsplit("/", 1)[0] + "/" + name + "?" + query
    return base.rsplit("/", 1)[0] + "/" + name


class Demo:
    """Start everything (`start`), tell the story (`story`), serve until stopped (`stop`)."""

    def __init__(self, *, database_url: str | None = None, rpc_url: str | None = None, api_port: int = 8080,
                 oracle_port: int = 8081, state_dir: Path = Path(".carbonledger/demo"),
                 database_name: str = "carbonledger_demo", substrate: bool = True, aptos: bool = True) -> None:
        self.database_url, self.rpc_url, self.database_name = database_url, rpc_url, database_name
        self.substrate = substrate
        self.chop: Any = None  # chopsticks, when the Asset Hub leg runs
        self.substrate_skipped: str | None = None  # why it does not
        self.aptos = aptos
        self.aptos_node: Any = None  # the stand-in fullnode of the Aptos leg
        self.aptos_skipped: str | None = None
        self.api_port, self.oracle_port, self.state_dir = api_port, oracle_port, Path(state_dir)
        self.stop_event = threading.Event()
        self._closers: list[Any] = []  # run in reverse order by stop()
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------------------------------------ start
    def start(self) -> Demo:
        from web3 import Web3

        from core.devnet import DevnetServer
        from chains.evm.deploy import deploy_protocol
        from store.migrate import upgrade

        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.db_url = fresh_database(self.database_url, self.state_dir, self.database_name)
        upgrade(self.db_url)
        if self.rpc_url is None:
            devnet = DevnetServer().start()
            self._closers.append(devnet.stop)
            self.rpc_url = devnet.url
        self.w3 = Web3(Web3.HTTPProvider(self.rpc_url, request_kwargs={"timeout": 60}))
        self.admin, self.oracle_addr, self.ev_owner, self.buyer, self.shopper = self.w3.eth.accounts[:5]
        self.deployment = deploy_protocol(self.w3, self.admin, roles={
            "ISSUER_ROLE": [self.admin, self.oracle_addr], "ORACLE_ROLE": [self.oracle_addr],
            "SETTLER_ROLE": [self.oracle_addr], "ARBITER_ROLE": [self.admin]})
        dep_file = self.state_dir / "deployment.json"
        self.deployment.write(dep_file)
        self._start_chopsticks()
        self._start_aptos()
        self.settings = self._settings(dep_file)
        self._start_daraja()
        self._start_stripe()
        self._start_oracle()
        self._start_indexer()
        self._start_api()
        return self

    def _settings(self, dep_file: Path) -> Any:
        from core.config import Settings

        return Settings(
            database={"url": self.db_url},
            chains={"devnet": {"rpc_url": self.rpc_url, "deployment": dep_file, "finality_depth": 2, "poll_interval_s": 0.2},
                    **substrate_leg.chain_settings(self), **aptos_leg.chain_settings(self)},
            oracle={"port": self.oracle_port, "signer": {"private_key": DEVNET_KEYS[1]}, "stripe_webhook_secrets": [WHSEC],
                    "mpesa_callback_secret": MPESA_SECRET, "mpesa_allowed_ips": ["127.0.0.1/32"],
                    "mpesa_consumer_key": "demo", "mpesa_consumer_secret": "demo", "mpesa_passkey": "demo",
                    "mpesa_callback_url": f"http://127.0.0.1:{self.oracle_port}/webhooks/mpesa/{MPESA_SECRET}",
                    "iot_device_keys": {DEVICE: TOKENS["device"]}, "merchant_tokens": {"kibanda": TOKENS["merchant"]},
                    "merchant_payout_addresses": {"kibanda": self.ev_owner},
                    "verifier_tokens": {"gold-standard-desk": TOKENS["verifier"], "gold-standard-review": TOKENS["reviewer"]},
                    "operator_tokens": {"demo": TOKENS["operator"]}, "anchor_interval_s": 2.0, "poll_interval_s": 0.05,
                    "fiat_rates": FIAT_RATES, "payment_recheck_s": 1.0},
            api={"port": self.api_port},
        )

    def _start_chopsticks(self) -> None:
        """The Asset Hub leg's chain (chopsticks, a real runtime), or one line saying why it is skipped."""
        self.chop, self.substrate_skipped = substrate_leg.start(self.substrate)
        if self.chop is not None:
            self._closers.append(self.chop.close)

    def _start_aptos(self) -> None:
        """The Aptos leg's stand-in fullnode (no Aptos node runs here: a stand-in, labelled as such)."""
        self.aptos_node, self.aptos_skipped = aptos_leg.start(self.aptos)
        if self.aptos_node is not None:
            self._closers.append(self.aptos_node.stop)

    def _start_daraja(self) -> None:
        from oracle.testing import FakeDaraja

        self.daraja = FakeDaraja().__enter__()
        self._closers.append(lambda: self.daraja.__exit__(None, None, None))
        self.settings = self.settings.model_copy(update={"oracle": self.settings.oracle.model_copy(
            update={"mpesa_api_base": self.daraja.url})})

    def _start_stripe(self) -> None:
        from oracle.testing import STRIPE_KEY, LocalStripe

        self.stripe = LocalStripe().__enter__()
        self._closers.append(lambda: self.stripe.__exit__(None, None, None))
        self.settings = self.settings.model_copy(update={"oracle": self.settings.oracle.model_copy(
            update={"stripe_api_key": SecretStr(STRIPE_KEY), "stripe_api_base": self.stripe.url})})

    def _start_oracle(self) -> None:
        from core.service import ThreadedServer
        from oracle.reconciliation import schedule
        from oracle.runtime import Oracle

        self.oracle = Oracle(self.settings, self.db_url, sender_thread=True)  # the demo is one process
        self._closers.append(self._stop_oracle)
        server = ThreadedServer(self.oracle.app.asgi(), self.settings.oracle.host, self.oracle_port, "oracle").start()
        self._closers.append(server.stop)
        self.oracle_url = server.url
        self._thread(self.oracle.sender.run, "sender")
        self._scheduler = schedule(self.oracle.pool, self.oracle.chain, self.settings.oracle)

    def _stop_oracle(self) -> None:
        self.oracle.stop.set()
        if getattr(self, "_scheduler", None) is not None:  # absent when start-up failed half way
            self._scheduler.shutdown(wait=False)
        for t in self._threads:
            t.join(timeout=15)
        self.oracle.close_sender()
        self.oracle.pool.close()
        self.oracle.rpc.close()

    def _start_indexer(self) -> None:
        from indexer.runner import Indexer

        self.indexer = Indexer(self.settings, db_url=self.db_url, stop=self.stop_event)
        self._thread(self.indexer.run, "indexer")

    def _start_api(self) -> None:
        from core.service import ThreadedServer
        from gqlapi.app import create_app

        server = ThreadedServer(create_app(self.settings, self.db_url), self.settings.api.host, self.api_port, "api").start()
        self._closers.append(server.stop)
        self.api_url = server.url

    def _thread(self, target: Any, name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self) -> None:
        """Stop the indexer and sender between units of work, then the servers; safe to call twice."""
        self.stop_event.set()
        while self._closers:
            try:
                self._closers.pop()()
            except Exception:  # noqa: BLE001 - shutting down: report and keep closing the rest
                log.exception("demo shutdown step failed")

    # ------------------------------------------------------------------------------------------------ helpers
    def _tx(self, sender: str, call: Any, value: int = 0) -> Any:
        receipt = self.w3.eth.wait_for_transaction_receipt(call.transact({"from": sender, "value": value}), timeout=60)
        if receipt["status"] != 1:
            raise RuntimeError(f"demo transaction reverted: {receipt['transactionHash'].hex()}")
        return receipt

    def _c(self, name: str) -> Any:
        return self.deployment.contract(self.w3, name)

    def _wait_intent(self, key: str, token: str = TOKENS["operator"], timeout_s: float = 60.0) -> dict[str, Any]:
        """The intent's full view (as its owner, or the operator) once it is confirmed."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            r = httpx.get(f"{self.oracle_url}/intents/{key}", timeout=5, headers={"authorization": f"Bearer {token}"})
            if r.status_code == 200 and r.json()["status"] in ("confirmed", "failed"):
                view = r.json()
                if view["status"] == "failed":
                    raise RuntimeError(f"intent {key} failed: {view.get('error')}")
                return view
            time.sleep(0.2)
        raise TimeoutError(f"intent {key} not confirmed within {timeout_s}s")

    def wait_indexed(self, timeout_s: float = 60.0) -> int:
        """Block until the indexer's cursor reaches the chain head; returns that block."""
        head = self.w3.eth.block_number
        deadline = time.monotonic() + timeout_s
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            while time.monotonic() < deadline:
                row = conn.execute("SELECT block_number FROM indexer_cursor WHERE chain = 'devnet'").fetchone()
                if row and row[0] >= head:
                    return head
                time.sleep(0.2)
        raise TimeoutError(f"indexer did not reach block {head} within {timeout_s}s")

    # ------------------------------------------------------------------------------------------------ the story
    def story(self) -> Story:
        """Tell the story through the real interfaces; the oracle client is closed on every way out."""
        with httpx.Client(base_url=self.oracle_url, timeout=30) as oracle:
            return self._story(oracle)

    def _story(self, oracle: httpx.Client) -> Story:
        from eth_utils import keccak

        from oracle.testing import payment_event, signed

        st = Story()
        cc, mk, es, qr = self._c("CarbonCredit"), self._c("Marketplace"), self._c("Escrow"), self._c("QRPayment")

        meta = {"project": "Nairobi EV ride-hailing fleet", "vehicle": "KDA 123E", "method": "EV vs ICE displacement"}
        r = self._tx(self.admin, cc.functions.createBatch("EV-NBO-001", 2026, "seed:EV-displacement-120-20",
                                                          "carbonledger-demo", "CLD-EV-NBO-2026-0001",
                                                          keccak(text=json.dumps(meta, sort_keys=True))))
        batch_id = cc.functions.batchCount().call()
        st.ids["batch_id"] = batch_id
        st.add(f"credit batch #{batch_id} created for the EV fleet project", _hex(r["transactionHash"]))

        trips = [{"date": d, "route": route, "km": km, "co2_saved_g": co2_saved_g(km)} for d, route, km in TRIPS]
        total = sum(t["co2_saved_g"] for t in trips)
        auth = {"authorization": f"Bearer {TOKENS['verifier']}"}
        vid = "ev-KDA123E-2026-11-w47"
        body = {"id": vid, "recipient": self.ev_owner, "batch_id": batch_id, "amount": total,
                "evidence": {"vehicle": "KDA 123E", "formula": "(120 - 20) g/km x km", "trips": trips}}
        oracle.post("/verifications", json=body, headers=auth).raise_for_status()
        review = {"authorization": f"Bearer {TOKENS['reviewer']}"}  # four eyes: a second verifier approves
        key = oracle.post(f"/verifications/{vid}/approve", headers=review).raise_for_status().json()["intent_key"]
        view = self._wait_intent(key, TOKENS["reviewer"])
        st.ids["minted"] = total
        st.add(f"{len(trips)} trips, {sum(t['km'] for t in trips):.1f} km: requested by one verifier, approved by "
               f"another, minted {total} g CO2e to the EV owner", view["tx_hash"], "CarbonCredit.mint by the oracle")

        now = int(time.time())
        import hashlib
        import hmac

        for i in range(6):
            reading = {"device_id": DEVICE, "ts": now - 60 * (6 - i), "battery_pct": 80 - i,
                       "metrics": {"energy_kwh": round(3.2 + 0.4 * i, 2), "temperature_c": 24 + i % 3}}
            raw = json.dumps(reading).encode()
            sig = hmac.new(TOKENS["device"].encode(), raw, hashlib.sha256).hexdigest()
            oracle.post("/iot/readings", content=raw, headers={"content-type": "application/json", "x-device-id": DEVICE,
                                                                "x-signature": sig}).raise_for_status()
        anchor_tx = self._wait_anchor()
        st.add("6 telematics readings anchored as one Merkle root", anchor_tx, "IoTAnchor.anchor")

        self._tx(self.ev_owner, cc.functions.setApprovalForAll(mk.address, True))
        price = 2 * 10**12  # wei per gram
        r = self._tx(self.ev_owner, mk.functions.list(batch_id, total // 2, price))
        listing_id = mk.functions.listingCount().call()
        st.ids["listing_id"] = listing_id
        st.add(f"listing #{listing_id}: {total // 2} g at {price} wei/g", _hex(r["transactionHash"]))

        bought = total // 4
        checkout = {"listing_id": str(listing_id), "buyer": self.buyer, "amount": str(bought)}
        pi = self.stripe.payment_intent(checkout, amount=bought * 2)  # 2 US cents a gram: 2 x 10^12 wei at the rate
        event = payment_event(pi["id"], checkout, amount=bought * 2)
        raw, headers = signed(event, WHSEC)
        self.wait_indexed()  # the oracle checks the payment against the indexed listing (else it waits for it)
        key = oracle.post("/webhooks/stripe", content=raw, headers=headers).raise_for_status().json()["intent"]
        view = self._wait_intent(key)
        st.ids["payment_intent"] = pi["id"]
        st.add(f"buyer paid by card (Stripe {pi['id']}): {bought} g settled", view["tx_hash"],
               "Marketplace.settleOffchain")

        r = self._tx(self.buyer, cc.functions.retire(batch_id, bought // 2, "Acme Logistics Ltd", "FY2026 scope 3 offset"))
        cert = cc.functions.certificateCount().call()
        st.ids["certificate_id"] = cert
        st.add(f"buyer retired {bought // 2} g: certificate #{cert}", _hex(r["transactionHash"]))

        r = self._tx(self.shopper, es.functions.createOrder(self.ev_owner, 10**15, keccak(text="charging cable, 7 kW")))
        order_id = es.functions.orderCount().call()
        merchant = {"authorization": f"Bearer {TOKENS['merchant']}"}
        self.wait_indexed()  # an STK push is only sent for an indexed order it pays for
        cid = oracle.post("/mpesa/stkpush", json={"phone": "254708374149", "amount": 1500, "target": {"order_id": order_id}},
                          headers=merchant).raise_for_status().json()["checkout_request_id"]
        receipt = "SKL" + str(now)[-7:]
        callback = {"Body": {"stkCallback": {
            "MerchantRequestID": "demo-1", "CheckoutRequestID": cid, "ResultCode": 0,
            "ResultDesc": "The service request is processed successfully.",
            "CallbackMetadata": {"Item": [{"Name": "Amount", "Value": 1500}, {"Name": "MpesaReceiptNumber", "Value": receipt},
                                          {"Name": "Balance"}, {"Name": "TransactionDate", "Value": 20261122120000},
                                          {"Name": "PhoneNumber", "Value": 254708374149}]}}}}
        key = oracle.post(f"/webhooks/mpesa/{MPESA_SECRET}", json=callback).raise_for_status().json()["intent"]
        view = self._wait_intent(key, TOKENS["merchant"])
        st.ids["order_id"] = order_id
        st.add(f"escrow order #{order_id} paid by M-Pesa ({receipt})", view["tx_hash"], "Escrow.recordOffchainPayment")
        self._tx(self.ev_owner, es.functions.markShipped(order_id, keccak(text="G4S-TRK-0042")))
        r = self._tx(self.shopper, es.functions.confirmDelivery(order_id))
        st.add(f"order #{order_id} shipped and delivered", _hex(r["transactionHash"]))

        # The oracle issues the order hash (unpredictable, bound to the shop); the shop shows it as a QR code.
        order_hash = oracle.post("/qr/orders", json={}, headers=merchant).raise_for_status().json()["order_hash"]
        self._tx(self.shopper, qr.functions.pay(order_hash), value=5 * 10**14)
        self.wait_indexed()  # the oracle settles only an order whose payment it has indexed
        key = oracle.post("/settlements", json={"order_hash": order_hash}, headers=merchant).raise_for_status().json()["intent"]
        view = self._wait_intent(key, TOKENS["merchant"])
        st.ids["qr_order_hash"] = order_hash
        st.add("QR order issued to the shop, paid by a shopper on chain, settled to the shop's payout address",
               view["tx_hash"], "QRPayment.settleQROrder")

        if self.chop is not None:
            substrate_leg.story(self, st, total, bought)
        if self.aptos_node is not None:
            aptos_leg.story(self, st, total, bought)
        st.ids["indexed_block"] = self.wait_indexed()
        return st

    def _wait_anchor(self, timeout_s: float = 30.0) -> str:
        deadline = time.monotonic() + timeout_s
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            while time.monotonic() < deadline:
                row = conn.execute("SELECT tx_hash FROM oracle_intent WHERE contract = 'IoTAnchor' AND status = 'confirmed'"
                                   " ORDER BY id DESC LIMIT 1").fetchone()
                if row:
                    return row[0]
                time.sleep(0.2)
        raise TimeoutError("IoT readings were not anchored in time")

    # ------------------------------------------------------------------------------------------------ queries
    def queries(self, story: Story) -> dict[str, tuple[str, dict[str, Any]]]:
        """The three queries the demo prints, read from graphql/operations (the same files the tests run)."""
        ops = Path(__file__).resolve().parent.parent / "graphql" / "operations"
        return {
            "portfolio": ((ops / "portfolio.graphql").read_text(), {"owner": self.buyer}),
            "certificate": ((ops / "certificate.graphql").read_text(), {"id": str(story.ids["certificate_id"]),
                                                                      "chain": "devnet"}),  # ids are per chain
            "marketStats": ((ops / "market_stats.graphql").read_text(), {"batchId": str(story.ids["batch_id"]),
                                                                      "chain": "devnet"}),
            **({"portfolio on Asset Hub": ((ops / "portfolio.graphql").read_text(), {"owner": story.ids["substrate_buyer"]})}
               if "substrate_buyer" in story.ids else {}),
            **({"portfolio on Aptos (stand-in)": ((ops / "portfolio.graphql").read_text(), {"owner": story.ids["aptos_buyer"]})}
               if "aptos_buyer" in story.ids else {}),
        }


def print_report(demo: Demo, story: Story) -> None:
    """What happened (with tx hashes), where the API is, and three queries to paste."""
    from rich.console import Console
    from rich.markup import escape

    console = Console(highlight=False, soft_wrap=True)
    console.rule("[bold]carbonledger demo: what happened on chain")
    for i, step in enumerate(story.steps, 1):
        extra = f"  [dim]({step.detail})[/dim]" if step.detail else ""
        console.print(f"{i:2d}. {escape(step.what)}{extra}")
        if step.tx:
            console.print(f"    tx {step.tx}", style="cyan")
    console.print(f"\nindexed up to block {story.ids['indexed_block']}; "
                  f"oracle at {demo.oracle_url} (GET /intents/<key>, /health, /metrics)")
    if demo.substrate_skipped:
        console.print(f"Asset Hub leg skipped: {demo.substrate_skipped}")
    if demo.aptos_skipped:
        console.print(f"Aptos leg skipped: {demo.aptos_skipped}")
    console.rule(f"[bold]GraphQL: open {demo.api_url}/graphql and paste")
    for name, (query, variables) in demo.queries(story).items():
        console.print(f"\n[bold]# {name}[/bold]   variables: {json.dumps(variables)}")
        console.print(escape(query.strip()), style="green")
    console.print("\n(the same files: graphql/operations/portfolio.graphql, certificate.graphql, market_stats.graphql)")
