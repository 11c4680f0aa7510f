"""The webhook path's re-fetch of a PaymentIntent (`oracle.ingress.stripe_webhook.fetch`), against localstripe.

It asks through the stripe library's `raw_request` and our urllib3 client, which reads the environment's proxy once: the
answer must be what the library's own `retrieve(...).to_dict()` gives, an id cannot reach another resource, and the
environment's proxy is still used.
"""

from __future__ import annotations

import http.server
import threading
from types import SimpleNamespace

import httpx
import pytest
from pydantic import SecretStr

from oracle.ingress import stripe_webhook
from oracle.ingress.common import BadRequest
from oracle.testing import STRIPE_KEY
from tests.integration.oracle_fixtures import localstripe  # noqa: F401 (fixture)


@pytest.fixture()
def settings(localstripe):  # noqa: F811
    stripe_webhook._client.cache_clear()  # the client reads the environment's proxy when it is built
    yield SimpleNamespace(stripe_api_key=SecretStr(STRIPE_KEY), stripe_api_base=localstripe.url)
    stripe_webhook._client.cache_clear()


def test_fetch_answers_what_the_library_object_holds(localstripe, settings):  # noqa: F811
    paid = localstripe.payment_intent({"listing_id": "7", "buyer": "0x" + "ab" * 20, "amount": "2"})
    held = localstripe.payment_intent({"auction_id": "3", "bidder": "0x" + "cd" * 20, "price_per_unit": "5"},
                                      hold=True)
    for pi in (paid, held):
        got = stripe_webhook.fetch(settings, pi["id"])
        assert got == localstripe.client().v1.payment_intents.retrieve(pi["id"]).to_dict()
        assert got["metadata"] == pi["metadata"] and got["status"] in ("succeeded", "requires_capture")
    assert stripe_webhook.fetch(settings, "pi_unknown") is None


@pytest.mark.parametrize("pi_id", ["pi_x/../../customers", "pi_x?expand[]=customer", "pi_x#y", "pi_x%2F.."])
def test_an_id_reaches_no_other_resource(localstripe, settings, pi_id):  # noqa: F811
    localstripe.client().v1.customers.create()  # something another path could name
    try:
        got = stripe_webhook.fetch(settings, pi_id)
    except BadRequest as err:  # refused by Stripe's side: retried later, never an object
        assert err.status == 503
    else:
        assert got is None


def test_fetch_goes_through_the_environments_proxy(localstripe, settings, monkeypatch):  # noqa: F811
    seen: list[str] = []

    class Proxy(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # a plain-HTTP forward proxy: the request line holds the absolute URL
            seen.append(self.path)
            r = httpx.get(self.path, headers={k: v for k, v in self.headers.items() if k.lower() != "host"},
                          trust_env=False)  # not through itself
            self.send_response(r.status_code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(r.content)))
            self.end_headers()
            self.wfile.write(r.content)

        def log_message(self, *args: object) -> None:
            pass

    pi = localstripe.payment_intent({"listing_id": "1", "buyer": "0x" + "11" * 20, "amount": "1"})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for var in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.server_address[1]}")
        assert stripe_webhook.fetch(settings, pi["id"])["id"] == pi["id"]
        assert seen == [f"{localstripe.url}/v1/payment_intents/{pi['id']}"]
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # read when the client is built: a new one bypasses the proxy
        stripe_webhook._client.cache_clear()
        assert stripe_webhook.fetch(settings, pi["id"])["id"] == pi["id"]
        assert len(seen) == 1
    finally:
        server.shutdown()
        server.server_close()


def test_a_refetch_writes_no_log_line(localstripe, settings):  # noqa: F811
    """The stripe library logs two INFO lines per request; the daemons' log keeps them out (WARNING and above)."""
    import io
    import logging

    from core.logs import setup_logging

    root, lib = logging.getLogger(), logging.getLogger("stripe")
    saved = root.handlers[:], root.level, lib.level
    out = io.StringIO()
    try:
        setup_logging("INFO", out)
        pi = localstripe.payment_intent({"listing_id": "1", "buyer": "0x" + "11" * 20, "amount": "1"})
        assert stripe_webhook.fetch(settings, pi["id"])["id"] == pi["id"]
        logging.getLogger("carbonledger.oracle").info("still logged")
    finally:
        root.handlers[:], _, _ = saved
        root.setLevel(saved[1])
        lib.setLevel(saved[2])
    assert "still logged" in out.getvalue() and "Stripe" not in out.getvalue()


def test_an_unreachable_stripe_is_a_503_naming_no_key(settings, caplog, monkeypatch):
    """A transport fault (nothing listens there) is retried once by the library, then answered 503 so that Stripe
    redelivers; neither the answer nor the log names the API key."""
    from core.anvil import free_port

    calls = []
    down = SimpleNamespace(stripe_api_key=settings.stripe_api_key, stripe_api_base=f"http://127.0.0.1:{free_port()}")
    real = stripe_webhook.Urllib3Client.request
    monkeypatch.setattr(stripe_webhook.Urllib3Client, "request",
                        lambda self, *a, **kw: calls.append(a[1]) or real(self, *a, **kw))
    with pytest.raises(BadRequest) as err:
        stripe_webhook.fetch(down, "pi_123")
    assert err.value.status == 503 and len(calls) == 2  # the first try and the library's one retry
    text = str(err.value) + caplog.text
    assert STRIPE_KEY not in text and STRIPE_KEY[-8:] not in text


def test_an_oversized_answer_is_refused_unread_and_the_pool_still_serves(settings, caplog):
    """The re-fetch reads at most MAX_BODY_BYTES of an answer (the library's JSON parser never sees more): an endless
    body from a wrong or hostile `stripe_api_base` is a 503 (Stripe redelivers) and a log line saying why, after
    reading little more than the limit; the client's pool then serves the next question as before."""
    sent = {"bytes": 0}
    conns: list[tuple[str, int]] = []  # the client's (address, port) of each request: its connection

    class Endless(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            conns.append(self.client_address)
            if "small" in self.path:
                body = b'{"id": "pi_small", "object": "payment_intent"}'
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(1 << 30))  # claims a gigabyte
            self.end_headers()
            chunk = b"[" * 65536
            try:
                while sent["bytes"] < 1 << 30:
                    self.wfile.write(chunk)
                    sent["bytes"] += len(chunk)
            except OSError:  # the client hung up: what we want
                pass

        def log_message(self, *a) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Endless)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        hostile = SimpleNamespace(stripe_api_key=settings.stripe_api_key,
                                  stripe_api_base=f"http://127.0.0.1:{srv.server_address[1]}")
        with pytest.raises(BadRequest) as err:
            stripe_webhook.fetch(hostile, "pi_big")
        assert err.value.status == 503
        assert "over the size limit" in caplog.text and STRIPE_KEY not in caplog.text + str(err.value)
        assert sent["bytes"] < 64 * stripe_webhook.MAX_BODY_BYTES  # stopped near the limit (socket buffers aside)
        for _ in range(2):
            assert stripe_webhook.fetch(hostile, "pi_small") == {"id": "pi_small", "object": "payment_intent"}
        # The refused answer's connection is never reused (its unread rest would be read as the next answer); the
        # small answers, read to their end, share one kept-alive connection.
        assert len(conns) == 3 and conns[1] != conns[0] and conns[2] == conns[1], conns
    finally:
        srv.shutdown()
        srv.server_close()
