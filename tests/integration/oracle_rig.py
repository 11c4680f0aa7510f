"""The oracle in process for integration tests (`Rig`): its ASGI app through httpx, its sender driven round by round,
the real indexer run over its chain (so the oracle reads indexed payments). Here, not in `oracle.testing`: the
oracle never imports the indexer."""

from __future__ import annotations

import threading
from typing import Any

import httpx

from indexer.testing import index_once
from oracle.testing import (FIAT_RATES, OPERATOR_TOKEN, ORACLE_KEY, STRIPE_KEY, WHSEC, LocalStripe, deploy_world,
                            payment_event, signed)

DARAJA_SETTINGS = {"mpesa_consumer_key": "ck", "mpesa_consumer_secret": "cs", "mpesa_passkey": "pk",
                   "mpesa_callback_secret": "cb-secret-123", "mpesa_allowed_ips": ["127.0.0.1/32"],
                   "mpesa_callback_url": "https://oracle.example/webhooks/mpesa/cb-secret-123"}


class Rig:
    """An oracle in process: the ASGI app through httpx, the sender driven round by round."""

    def __init__(self, db_url: str, anvil: Any, daraja_url: str | None = None, stripe: LocalStripe | None = None,
                 **overrides: Any) -> None:
        from prometheus_client import CollectorRegistry
        from psycopg_pool import ConnectionPool

        from core.config import OracleSettings
        from core.secrets import PrivateKey
        from chains.evm.rpc import RpcClient
        from chains.evm.writer import EvmWriter
        from oracle.app import OracleApp
        from oracle.sender import Sender
        from store.engine import libpq_url

        self.world = deploy_world(anvil.url, orders=3)
        self.anvil, self.anvil_url, self.db_url = anvil, anvil.url, db_url
        self.index()
        self.url = libpq_url(db_url)
        self.pool = ConnectionPool(self.url, min_size=1, max_size=6, open=True)
        if daraja_url:
            overrides = {**DARAJA_SETTINGS, "mpesa_api_base": daraja_url, **overrides}
        if stripe is not None:
            overrides = {"stripe_api_key": STRIPE_KEY, "stripe_api_base": stripe.url, **overrides}
        self.settings = OracleSettings(**{"stripe_webhook_secrets": [WHSEC], "max_in_flight": 8,
                                          "operator_tokens": {"rig-operator": OPERATOR_TOKEN},
                                          "fiat_rates": FIAT_RATES, **overrides})
        contracts = {n: c.address for n, c in self.world.deployment.contracts.items()}
        self.rpc = RpcClient(anvil.url, timeout_s=3, retries=1)
        self.writer = EvmWriter("local", self.rpc, 31337, PrivateKey(ORACLE_KEY), contracts)
        self.sender = Sender(self.url, self.pool, self.writer, self.settings, "test-owner", threading.Event())
        daraja = None
        if daraja_url:
            from oracle.ingress.mpesa import make_daraja

            daraja = make_daraja(self.settings)
        from oracle.payments import PaymentCollector

        self.registry = CollectorRegistry()
        self.registry.register(PaymentCollector(self.pool))
        self.app = OracleApp(self.pool, self.settings, "local", sender=self.sender, registry=self.registry,
                             daraja=daraja)
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app.asgi()), base_url="http://oracle")
        self.stripe = stripe

    async def post_event(self, event: dict, **kw: Any) -> httpx.Response:
        body, headers = signed(event, **kw)
        return await self.client.post("/webhooks/stripe", content=body, headers=headers)

    async def intent(self, key: str) -> dict[str, Any]:
        """The full view of an intent, as an operator sees it."""
        r = await self.client.get(f"/intents/{key}", headers={"authorization": f"Bearer {OPERATOR_TOKEN}"})
        assert r.status_code == 200, r.text
        return r.json()

    async def pay(self, metadata: dict[str, str], amount: int = 1099, currency: str = "usd", paid: bool = True,
                  event_id: str | None = None) -> tuple[str, httpx.Response]:
        """Make a PaymentIntent on localstripe and deliver its `payment_intent.succeeded` webhook: (id, response)."""
        from anyio import to_thread

        assert self.stripe is not None, "Rig(..., stripe=LocalStripe) pays through localstripe"
        pi = await to_thread.run_sync(lambda: self.stripe.payment_intent(metadata, amount, currency, paid))
        event = payment_event(pi["id"], metadata, amount=amount, event_id=event_id)
        event["data"]["object"] = pi
        return pi["id"], await self.post_event(event)

    def queue(self, intent: Any) -> None:
        """Queue a raw write intent, with no fact behind it (tests of the sender itself)."""
        from oracle.outbox import insert_intent

        with self.pool.connection() as conn, conn.transaction():
            insert_intent(conn.cursor(), "local", intent)

    def drain(self, rounds: int = 200) -> None:
        for _ in range(rounds):
            self.sender.run_once()
            with self.pool.connection() as c:
                if not c.execute("SELECT 1 FROM oracle_intent WHERE status IN ('pending','signed','sent') LIMIT 1").fetchone():
                    return
        raise AssertionError("intents did not settle")

    def index(self) -> None:
        """Run the indexer over the rig's chain up to its head (the oracle reads indexed payments)."""
        index_once(self.anvil.url, self.world.deployment, self.db_url, finality_depth=8)

    def status(self, key: str) -> str | None:
        with self.pool.connection() as c:
            row = c.execute("SELECT status FROM oracle_intent WHERE idempotency_key = %s", (key,)).fetchone()
        return row[0] if row else None

    def close(self) -> None:
        self.sender.lease.release()
        self.pool.close()
        self.rpc.close()
