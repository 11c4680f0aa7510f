"""Test and bench helpers: a deployed world on anvil, signed Stripe deliveries, localstripe, an oracle subprocess,
a fake Daraja, an in-process oracle (Rig) whose world is indexed.

Uses anvil's public devnet keys only. Not imported by the daemon.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from core.devnet import DEVNET_KEYS

ROOT = Path(__file__).resolve().parent.parent
ORACLE_KEY = DEVNET_KEYS[1]
WHSEC = "whsec_test_primary"
WHSEC_OLD = "whsec_test_rotated_out"
OPERATOR_TOKEN = "tok-rig-operator"
STRIPE_KEY = "sk_test_carbonledger"
# deploy_world's prices: listing 1 wei per credit, orders 1000.. wei. A cent buys 1 wei, a shilling 2000 wei.
FIAT_RATES = {"usd": {"decimals": 2, "wei_per_unit": 100}, "kes": {"decimals": 2, "wei_per_unit": 2000}}


@dataclass
class World:
    w3: Any
    deployment: Any
    admin: str
    oracle: str
    listing_id: int
    batch_id: int
    order_ids: list[int]

    def address(self, name: str) -> str:
        return self.deployment.address(name)

    def contract(self, name: str) -> Any:
        return self.deployment.contract(self.w3, name)


def deploy_world(rpc_url: str, *, listing_amount: int = 10**6, orders: int = 0) -> World:
    """Deploy the protocol; oracle key gets ORACLE/SETTLER/ISSUER; one big listing; `orders` escrow orders."""
    from eth_account import Account
    from web3 import Web3

    from chains.evm.deploy import deploy_protocol

    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 30}))
    admin = w3.eth.accounts[0]
    oracle = Account.from_key(ORACLE_KEY).address
    dep = deploy_protocol(w3, admin, roles={"ORACLE_ROLE": [oracle], "SETTLER_ROLE": [oracle],
                                            "ISSUER_ROLE": [oracle, admin]})
    cc, mk, es = dep.contract(w3, "CarbonCredit"), dep.contract(w3, "Marketplace"), dep.contract(w3, "Escrow")

    def tx(call: Any) -> Any:
        r = w3.eth.wait_for_transaction_receipt(call.transact({"from": admin}))
        assert r["status"] == 1
        return r

    tx(cc.functions.createBatch("proj-1", 2024, "VM0042", "Verra", "VCS-1", b"\x11" * 32))
    batch_id = cc.functions.batchCount().call()
    tx(cc.functions.mint(admin, batch_id, listing_amount, b"\x22" * 32))
    tx(cc.functions.setApprovalForAll(mk.address, True))
    tx(mk.functions.list(batch_id, listing_amount, 1))
    listing_id = mk.functions.listingCount().call()
    order_ids = []
    for i in range(orders):
        tx(es.functions.createOrder(w3.eth.accounts[2], 1000 + i, b"\x33" * 32))
        order_ids.append(es.functions.orderCount().call())
    return World(w3, dep, admin, oracle, listing_id, batch_id, order_ids)


def payment_event(pi_id: str, metadata: dict[str, Any], *, event_id: str | None = None, amount: int = 1099) -> dict:
    """A `payment_intent.succeeded` event shaped like Stripe's (fields as in the API fixtures)."""
    return {"id": event_id or f"evt_{pi_id[3:]}", "object": "event", "api_version": "2024-06-20", "created": int(time.time()),
            "livemode": False, "pending_webhooks": 1, "request": {"id": None, "idempotency_key": None},
            "type": "payment_intent.succeeded",
            "data": {"object": {"id": pi_id, "object": "payment_intent", "amount": amount, "amount_received": amount,
                                "currency": "usd", "status": "succeeded", "metadata": metadata}}}


# localstripe predates PaymentIntent.amount_received; the launcher gives it Stripe's meaning (what the succeeded,
# captured charge took) so the oracle's checks read the field as they do on Stripe. Two costs of localstripe's that
# grow with its store, which Stripe's API does not have, are taken out so that bench/oracle.py measures the oracle:
# - it pickles its whole store to one fixed file, /tmp/localstripe.pickle, on every write (O(store) per write, shared
#   by every instance on the machine; only read back without --from-scratch, which we always pass): off;
# - every list of one kind scans the whole store for its key prefix, and exporting a PaymentIntent lists refunds three
#   times (its charge's `refunds`, `amount_refunded`, `refunded`): 95% of its CPU at 1,500 PaymentIntents, where it
#   answered 33 re-fetches/s (py-spy). The store now also keeps its objects by kind, in the same order.
_LOCALSTRIPE = """
from localstripe import resources, server
def _received(self):
    c = self.latest_charge
    return c.amount if c is not None and c.status == 'succeeded' and c.captured else 0
resources.PaymentIntent.amount_received = property(_received)
def _kind(store, key):
    kinds = store.__dict__.setdefault('kinds', {})
    return kinds.setdefault(key.split(':', 1)[0], {})
def _set(self, key, value):
    dict.__setitem__(self, key, value)
    _kind(self, key)[key] = value
def _del(self, key):
    dict.__delitem__(self, key)
    _kind(self, key).pop(key, None)
def _clear(self):
    dict.clear(self)
    self.__dict__.pop('kinds', None)
resources.Store.__setitem__, resources.Store.__delitem__, resources.Store.clear = _set, _del, _clear
resources.Store.dump_to_disk = lambda self: None
def _list_all(cls, url, limit=None, starting_after=None, **kwargs):
    if kwargs:
        raise resources.UserError(400, 'Unexpected ' + ', '.join(kwargs.keys()))
    li = resources.List(url, limit=limit, starting_after=starting_after)
    li._list = list(_kind(resources.store, cls.object + ':').values())
    return li
resources.StripeObject._api_list_all = classmethod(_list_all)
server.start()
"""


class LocalStripe:
    """localstripe (Stripe's API, in memory) as a subprocess on a free port, and PaymentIntents made on it."""

    def __init__(self) -> None:
        from core.anvil import free_port

        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self._card: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LocalStripe:
        self.proc = subprocess.Popen([sys.executable, "-c", _LOCALSTRIPE, "--port", str(self.port), "--from-scratch"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def up() -> bool:
            try:
                return httpx.get(self.url + "/v1/customers", auth=(STRIPE_KEY, ""), timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, 30, 0.1, "localstripe")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def client(self) -> Any:
        import stripe

        return stripe.StripeClient(STRIPE_KEY, base_addresses={"api": self.url})

    def payment_intent(self, metadata: dict[str, str], amount: int = 1099, currency: str = "usd",
                       paid: bool = True, hold: bool = False) -> dict:
        """A PaymentIntent with our checkout's metadata: paid by card (succeeded), left unpaid, or with `hold` an
        authorised hold (capture_method=manual: requires_capture)."""
        c = self.client()
        params: dict[str, Any] = {"amount": amount, "currency": currency, "metadata": metadata}
        if hold:
            params["capture_method"] = "manual"
        if paid:
            if self._card is None:  # one card pays for all
                self._card = c.v1.payment_methods.create(params={"type": "card", "card": {
                    "number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"}}).id
            params.update(payment_method=self._card, confirm=True)
        return c.v1.payment_intents.create(params=params).to_dict()


def signed(event: dict, secret: str = WHSEC, timestamp: int | None = None) -> tuple[bytes, dict[str, str]]:
    """Body and headers as Stripe sends them (signature built by the stripe library's own helper)."""
    import stripe

    body = json.dumps(event, separators=(",", ":"))
    header = stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=timestamp)
    return body.encode(), {"stripe-signature": header, "content-type": "application/json"}


def write_config(path: Path, *, rpc_url: str, deployment_file: Path, db_url: str, port: int, chain: str = "local",
                 extra: str = "", stripe_url: str | None = None) -> Path:
    """An oracle config for tests and benches (Stripe's API at `stripe_url`, fiat rates of FIAT_RATES)."""
    stripe_api = f'stripe_api_key = "{STRIPE_KEY}"\nstripe_api_base = "{stripe_url}"' if stripe_url else ""
    rates = "".join(f"\n[oracle.fiat_rates.{cur}]\ndecimals = {r['decimals']}\nwei_per_unit = {r['wei_per_unit']}\n"
                    for cur, r in FIAT_RATES.items())
    path.write_text(f"""
[database]
url = "{db_url}"

[chains.{chain}]
rpc_url = "{rpc_url}"
deployment = "{deployment_file}"
request_timeout_s = 3.0

[oracle]
port = {port}
chain = "{chain}"
stripe_webhook_secrets = ["{WHSEC}", "{WHSEC_OLD}"]
confirmations = 1
max_in_flight = 64
fee_bump_after_s = 20.0
poll_interval_s = 0.05
{stripe_api}
{extra}
{rates}""")
    return path


class OracleProcess:
    """`carbonledger oracle run` as a subprocess (key via env), logs appended to `log_path`."""

    def __init__(self, config: Path, port: int, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.config, self.port, self.log_path = config, port, log_path
        self.env = {**os.environ, "CARBONLEDGER_SIGNER_KEY": ORACLE_KEY, **(env or {})}
        self.env.pop("CARBONLEDGER_DATABASE_URL", None)  # the config file names the test's database
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> OracleProcess:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "carbonledger.cli", "--config", str(self.config), "oracle", "run"],
                                     cwd=ROOT, env=self.env, stdout=log, stderr=log)
        log.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 30, *, sender: bool = False) -> None:
        """Until /ready answers 200; with `sender`, also until it says the sender holds the nonce lease (/ready
        answers once webhooks can be taken, while the sender's process may still be starting)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"oracle exited {self.proc.returncode}; see {self.log_path}")
            try:
                r = httpx.get(self.url + "/ready", timeout=1)
                if r.status_code == 200 and (not sender or r.json().get("nonce_owner") is True):
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.05)
        raise RuntimeError("oracle's sender does not hold the nonce lease" if sender else "oracle not ready")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def terminate(self, timeout: float = 20) -> int:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            return self.proc.wait(timeout)
        return self.proc.returncode if self.proc else 0

    def __enter__(self) -> OracleProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.terminate()
        except subprocess.TimeoutExpired:
            self.kill()


def wait_until(pred: Any, timeout: float, interval: float = 0.1, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def count_events(w3: Any, contract: Any, event: str, from_block: int = 0) -> list[dict]:
    """Decoded logs of `event` via raw eth_getLogs (chunked), for exactly-once counting."""
    ev = getattr(contract.events, event)
    head = w3.eth.block_number
    out: list[dict] = []
    step = 2000
    topic = ev().topic
    topic = topic if isinstance(topic, str) else "0x" + bytes(topic).hex()
    topic = topic if topic.startswith("0x") else "0x" + topic
    for start in range(from_block, head + 1, step):
        params = {"address": contract.address, "fromBlock": hex(start), "toBlock": hex(min(start + step - 1, head))}
        if topic:
            params["topics"] = [topic]
        for raw in w3.eth.get_logs(params):
            out.append(dict(ev().process_log(raw)["args"]))
    return out


class FakeDaraja:
    """A local server speaking Daraja's JSON: OAuth token, STK push, STK push query (answers set per checkout)."""

    def __init__(self) -> None:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        self.results: dict[str, str] = {}  # CheckoutRequestID -> ResultCode (Daraja sends strings)
        self.queries: list[str] = []
        self.pushes: list[dict] = []
        self.token = "tok_" + os.urandom(4).hex()

        async def oauth(request: Request) -> JSONResponse:
            if not request.headers.get("authorization", "").startswith("Basic "):
                return JSONResponse({"errorMessage": "Invalid Authentication"}, status_code=400)
            return JSONResponse({"access_token": self.token, "expires_in": "3599"})

        def authed(request: Request) -> bool:
            return request.headers.get("authorization") == f"Bearer {self.token}"

        async def push(request: Request) -> JSONResponse:
            if not authed(request):
                return JSONResponse({"errorCode": "404.001.03", "errorMessage": "Invalid Access Token"}, status_code=401)
            body = await request.json()
            if not str(body.get("PhoneNumber", "")).startswith("254"):  # Daraja wants 2547XXXXXXXX
                return JSONResponse({"requestId": "1", "errorCode": "400.002.02",
                                     "errorMessage": "Bad Request - Invalid PhoneNumber"}, status_code=400)
            n = len(self.pushes) + 1
            self.pushes.append({k: v for k, v in body.items() if k not in ("PhoneNumber", "PartyA")})
            cid = f"ws_CO_{n:06d}"
            self.results.setdefault(cid, "0")
            return JSONResponse({"MerchantRequestID": f"{n}-1", "CheckoutRequestID": cid, "ResponseCode": "0",
                                 "ResponseDescription": "Success. Request accepted for processing",
                                 "CustomerMessage": "Success. Request accepted for processing"})

        async def query(request: Request) -> JSONResponse:
            if not authed(request):
                return JSONResponse({"errorCode": "404.001.03", "errorMessage": "Invalid Access Token"}, status_code=401)
            body = await request.json()
            cid = body.get("CheckoutRequestID")
            self.queries.append(cid)
            if cid not in self.results:
                return JSONResponse({"requestId": "1", "errorCode": "400.002.02",
                                     "errorMessage": "Bad Request - Invalid CheckoutRequestID"}, status_code=400)
            code = self.results[cid]
            return JSONResponse({"ResponseCode": "0", "ResponseDescription": "The service request has been accepted successsfully",
                                 "MerchantRequestID": "1-1", "CheckoutRequestID": cid, "ResultCode": code,
                                 "ResultDesc": "The service request is processed successfully." if code == "0" else "Request cancelled by user"})

        app = Starlette(routes=[Route("/oauth/v1/generate", oauth), Route("/mpesa/stkpush/v1/processrequest", push, methods=["POST"]),
                                Route("/mpesa/stkpushquery/v1/query", query, methods=["POST"])])
        from core.service import ThreadedServer

        self._server = ThreadedServer(app, name="fake-daraja")

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def url(self) -> str:
        return self._server.url

    def __enter__(self) -> FakeDaraja:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()
