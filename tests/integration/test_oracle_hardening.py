"""The oracle's front door: any header bytes get a 4xx (never a 500), failed authentications and plain traffic are
rate limited per client (429 + Retry-After) without locking providers out, and the M-Pesa callback secret never
reaches a log line or `carbonledger config`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from urllib.parse import quote

import anyio
import httpx
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.config import OracleSettings
from oracle.app import OracleApp
from oracle.testing import ROOT, WHSEC, OracleProcess, deploy_world, payment_event, signed, write_config
from tests.integration.oracle_fixtures import _no_key_in_logs, anyio_backend  # noqa: F401 (fixtures)

SECRET = "cb-secret-" + "k3y" * 8
TOKENS = {"merchant_tokens": {"shop": "tok-shop"}, "verifier_tokens": {"vera": "tok-vera"},
          "operator_tokens": {"ops": "tok-ops"}, "iot_device_keys": {"dev-1": "device-key"}}
BASE = {**TOKENS, "stripe_webhook_secrets": [WHSEC], "mpesa_callback_secret": SECRET,
        "mpesa_allowed_ips": ["127.0.0.1/32"]}
ROUTES = [("POST", "/webhooks/stripe"), ("POST", f"/webhooks/mpesa/{SECRET}"), ("POST", "/mpesa/stkpush"),
          ("POST", "/iot/readings"), ("GET", "/iot/readings/1/proof"), ("POST", "/settlements"), ("POST", "/qr/orders"),
          ("POST", "/verifications"), ("POST", "/verifications/v-1/approve"), ("GET", "/intents/qr:x")]


@pytest.fixture()
def pool(db_url):
    from psycopg_pool import ConnectionPool

    from store.engine import libpq_url

    with ConnectionPool(libpq_url(db_url), min_size=1, max_size=4) as p:
        yield p


def app_client(pool, peer: str = "127.0.0.1", **overrides) -> httpx.AsyncClient:
    app = OracleApp(pool, OracleSettings(**{**BASE, **overrides}), "local")
    return client_for(app, peer)


def client_for(app: OracleApp, peer: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app.asgi(), client=(peer, 4321)), base_url="http://o")


# ---------------------------------------------------------------------------------------------- any header bytes
raw_bytes = st.binary(max_size=80).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))


def _with_prefix(prefix: bytes | None = None) -> st.SearchStrategy[bytes]:
    """Random bytes, or random bytes behind the prefix that gets them as far as the credential comparison."""
    return st.one_of(raw_bytes, raw_bytes.map(lambda b: (prefix or f"t={int(time.time())},v1=".encode()) + b))


HEADERS = st.fixed_dictionaries({
    "authorization": st.one_of(st.none(), _with_prefix(b"Bearer ")), "x-signature": st.one_of(st.none(), raw_bytes),
    "stripe-signature": st.one_of(st.none(), _with_prefix()), "x-device-id": st.one_of(st.just(b"dev-1"), raw_bytes),
    "content-type": st.one_of(st.just(b"application/json"), raw_bytes), "x-forwarded-for": st.one_of(st.none(), raw_bytes)})
PATH_SECRET = st.one_of(st.just(SECRET), st.text(min_size=1, max_size=40).filter(lambda s: s not in (".", "..")))


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r[1])
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(headers=HEADERS, secret=PATH_SECRET, body=st.sampled_from([b"", b"{}", b'{"device_id": "dev-1"}']))
def test_any_header_bytes_get_a_4xx_never_a_500(pool, route, headers, secret, body):
    """Non-ASCII, control and invalid-UTF-8 bytes in every credential header (and in the secret path segment) of
    every route: 4xx, never a 500 (a non-ASCII X-Signature used to raise TypeError in compare_digest)."""
    method, path = route
    if path.startswith("/webhooks/mpesa/"):
        path = "/webhooks/mpesa/" + quote(secret, safe="")
    raw = [(k.encode(), v) for k, v in headers.items() if v is not None]

    async def go() -> httpx.Response:
        async with app_client(pool, auth_failure_limit=None, rate_limit=None, trusted_proxies=["127.0.0.0/8"]) as client:
            return await client.request(method, path, content=body, headers=raw)

    r = anyio.run(go)
    assert 400 <= r.status_code < 500 and r.status_code != 429, (method, path, raw, r.status_code, r.text)
    assert r.json()["error"]


@pytest.mark.anyio
@pytest.mark.parametrize("header, value", [("x-signature", "é" * 64), ("x-signature", "ﬀ"), ("stripe-signature", None),
                                           ("authorization", "Bearer tök-shop")])
async def test_non_ascii_credentials_are_refused_not_500(pool, header, value):
    body = json.dumps({"device_id": "dev-1", "ts": int(time.time()), "metrics": {"co2_ppm": 400}}).encode()
    if value is None:  # a Stripe signature with the right shape and a non-ASCII v1 (the stripe library's compare)
        value = f"t={int(time.time())},v1={'é' * 64}"
    path = {"x-signature": "/iot/readings", "stripe-signature": "/webhooks/stripe", "authorization": "/settlements"}[header]
    headers = [(b"content-type", b"application/json"), (b"x-device-id", b"dev-1"), (header.encode(), value.encode())]
    async with app_client(pool) as client:
        r = await client.post(path, content=body, headers=headers)
    assert r.status_code in (400, 401), r.text


# ---------------------------------------------------------------------------------------------- rate limits
def _past_the_door(r) -> bool:
    """A verified webhook reached its handler: the app has no Stripe API key, so the handler answers 503."""
    return r.status_code == 503 and r.json()["error"] == "not_configured"


@pytest.mark.anyio
async def test_wrong_token_guesses_are_limited_per_client_with_retry_after(pool):
    app = OracleApp(pool, OracleSettings(**BASE, auth_failure_limit="10/minute"), "local")
    attacker, merchant = client_for(app, "203.0.113.66"), client_for(app, "198.51.100.7")
    statuses, t0 = [], time.monotonic()
    for i in range(300):
        r = await attacker.post("/settlements", json={}, headers={"authorization": f"Bearer guess-{i}"})
        statuses.append(r.status_code)
    assert statuses[:10] == [401] * 10 and set(statuses[10:]) == {429}, statuses[:20]
    assert 1 <= int(r.headers["retry-after"]) <= 60 and r.json()["error"] == "rate_limited"
    # while blocked, even the right token is not looked at; every authenticated route is closed to that client
    for path in ("/settlements", "/verifications", "/mpesa/stkpush", "/iot/readings", "/qr/orders"):
        assert (await attacker.post(path, json={}, headers={"authorization": "Bearer tok-shop"})).status_code == 429
    # another client is not affected
    r = await merchant.post("/settlements", json={"order_hash": "0x12"}, headers={"authorization": "Bearer tok-shop"})
    assert r.status_code == 422
    assert time.monotonic() - t0 < 60  # all inside one window


@pytest.mark.anyio
async def test_providers_are_not_locked_out_by_an_attacker_elsewhere(pool):
    """The attacker hammers both webhooks (bad signatures, guessed secret paths), directly and through the trusted
    proxy with a forged X-Forwarded-For naming Stripe's address; Stripe and Daraja still get through."""
    app = OracleApp(pool, OracleSettings(**{**BASE, "mpesa_allowed_ips": ["196.201.214.0/24"]},
                                         auth_failure_limit="5/minute", trusted_proxies=["10.0.0.0/8"]), "local")
    stripe_ip, daraja_ip = "54.187.174.169", "196.201.214.200"
    direct, proxy = client_for(app, "203.0.113.66"), client_for(app, "10.0.0.2")
    forged = {"x-forwarded-for": f"{stripe_ip}, 203.0.113.77"}  # the proxy appended the attacker's real address
    body, headers = signed(payment_event("pi_ok", {"order_id": "1"}))
    bad = {**headers, "stripe-signature": headers["stripe-signature"][:-4] + "0000"}
    for _ in range(30):
        assert (await direct.post("/webhooks/stripe", content=body, headers=bad)).status_code in (400, 429)
        assert (await proxy.post("/webhooks/stripe", content=body, headers={**bad, **forged})).status_code in (400, 429)
        assert (await direct.post("/webhooks/mpesa/guess", json={})).status_code in (403, 429)
    assert (await direct.post("/webhooks/stripe", content=body, headers=headers)).status_code == 429
    assert (await proxy.post("/webhooks/stripe", content=body, headers={**headers, **forged})).status_code == 429
    # Stripe gets past the limits and the signature check to the handler (which, with no Stripe API key in this
    # app, cannot re-fetch the PaymentIntent and asks Stripe to retry: 503 not_configured, nothing recorded).
    r = await client_for(app, stripe_ip).post("/webhooks/stripe", content=body, headers=headers)
    assert _past_the_door(r), r.text
    r = await proxy.post("/webhooks/stripe", content=body, headers={**headers, "x-forwarded-for": stripe_ip})
    assert _past_the_door(r), r.text
    r = await client_for(app, daraja_ip).post(f"/webhooks/mpesa/{SECRET}", json={"Body": {}})
    assert (r.status_code, r.json()["error"]) == (400, "invalid_callback")  # past the secret and the allowlist


@pytest.mark.anyio
async def test_general_request_limit_per_client(pool):
    app = OracleApp(pool, OracleSettings(**BASE, rate_limit="5/minute", webhook_rate_limit="3/minute"), "local")
    a, b = client_for(app, "203.0.113.1"), client_for(app, "203.0.113.2")
    got = [(await a.get("/iot/readings/1/proof")).status_code for _ in range(7)]
    assert got == [404] * 5 + [429] * 2
    r = await a.get("/intents/qr:x")
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert (await b.get("/iot/readings/1/proof")).status_code == 404
    body, headers = signed(payment_event("pi_x", {"order_id": "1"}))
    hooks = [await a.post("/webhooks/stripe", content=body, headers=headers) for _ in range(4)]
    assert [_past_the_door(r) for r in hooks] == [True, True, True, False]  # webhooks have their own budget
    assert hooks[-1].status_code == 429


# ---------------------------------------------------------------------------------------------- the callback secret
def test_mpesa_callback_secret_is_in_no_log_and_no_config_output(db_url, anvil, tmp_path):
    """The real daemon (uvicorn, JSON logs at DEBUG): failing callbacks, including one that hits an internal error,
    leave the secret path in no log line; `carbonledger config` hides it and the callback URL holding it."""
    from core.anvil import free_port

    world = deploy_world(anvil.url)
    world.deployment.write(tmp_path / "deployment.json")
    port = free_port()
    extra = (f'mpesa_callback_secret = "{SECRET}"\nmpesa_allowed_ips = ["127.0.0.1/32"]\n'
             f'mpesa_callback_url = "https://oracle.example/webhooks/mpesa/{SECRET}"\n'
             'mpesa_consumer_key = "ck"\nmpesa_consumer_secret = "cs"\nmpesa_passkey = "pk"\n'
             f'mpesa_api_base = "http://127.0.0.1:{free_port()}"\nreconcile_interval_s = 3600.0')
    cfg = write_config(tmp_path / "oracle.toml", rpc_url=anvil.url, deployment_file=tmp_path / "deployment.json",
                       db_url=db_url, port=port, extra=extra)
    log = tmp_path / "oracle.log"
    proc = OracleProcess(cfg, port, log, env={"CARBONLEDGER_LOG_LEVEL": "DEBUG"}).start()
    try:
        url = f"{proc.url}/webhooks/mpesa/{SECRET}"
        sample = {"Body": {"stkCallback": {"MerchantRequestID": "m", "CheckoutRequestID": "ws_CO_1", "ResultCode": 0,
                                           "ResultDesc": "ok", "CallbackMetadata": {"Item": [
                                               {"Name": "Amount", "Value": 1}, {"Name": "MpesaReceiptNumber", "Value": "R1"}]}}}}
        assert httpx.post(url, content=b"{nope", headers={"content-type": "application/json"}).status_code == 400
        assert httpx.post(url, content=b"{}", headers={"content-type": "text/plain"}).status_code == 415
        assert httpx.post(url, json=sample).status_code == 404  # unknown checkout
        with psycopg.connect(db_url.replace("+psycopg", ""), autocommit=True) as c:  # an internal error on this route
            c.execute("ALTER TABLE oracle_mpesa_request RENAME TO oracle_mpesa_request_gone")
        assert httpx.post(url, json=sample).status_code == 500
        assert httpx.post(f"{proc.url}/webhooks/mpesa/{SECRET}x", json=sample).status_code == 404
    finally:
        assert proc.terminate() == 0
    text = log.read_text()
    assert SECRET not in text and quote(SECRET) not in text
    assert '"route":"mpesa_callback"' in text  # the failures are logged, by route name
    out = subprocess.run([sys.executable, "-m", "carbonledger.cli", "--config", str(cfg), "config"], cwd=ROOT,
                         capture_output=True, text=True, env={**OracleProcess(cfg, port, log).env}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert SECRET not in out.stdout + out.stderr and "mpesa_callback_url" in out.stdout

