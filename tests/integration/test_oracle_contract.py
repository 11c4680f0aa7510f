"""The oracle answers as its OpenAPI document says, on a real Postgres: every route, called with its documented
example (with valid credentials, and without), answers a documented status with a body matching the documented
schema (error codes included); then schemathesis generates requests from the document and checks the same."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import anyio
import httpx
import pytest
import schemathesis.specs.openapi.adapter  # noqa: F401 - loaded at collection: schemathesis imports it lazily, and
import schemathesis.specs.openapi.schemas  # noqa: F401 - compiling it later, at a depth hypothesis changed, trips
import stripe  # CPython 3.11 ("AST constructor recursion depth mismatch") depending on which tests ran before

from core.config import OracleSettings
from oracle.api.openapi import document
from oracle.api.routes import ROUTES, Op
from oracle.app import OracleApp
from oracle.testing import WHSEC

SECRET = "cb-secret-contract"
SETTINGS = {"merchant_tokens": {"shop": "tok-shop"}, "verifier_tokens": {"vera": "tok-vera", "otto": "tok-otto"},
            "operator_tokens": {"ops": "tok-ops"}, "iot_device_keys": {"fleet-car-17": "device-key"},
            "merchant_payout_addresses": {"shop": "0x" + "5a" * 20}, "stripe_webhook_secrets": [WHSEC],
            "mpesa_callback_secret": SECRET, "mpesa_allowed_ips": ["127.0.0.1/32"], "rate_limit": None,
            "webhook_rate_limit": None, "auth_failure_limit": None}
TOKENS = {"merchantToken": "tok-shop", "verifierToken": "tok-otto", "operatorToken": "tok-ops"}


@pytest.fixture()
def app(db_url):
    from psycopg_pool import ConnectionPool

    from store.engine import libpq_url

    with ConnectionPool(libpq_url(db_url), min_size=1, max_size=4) as pool:
        yield OracleApp(pool, OracleSettings(**SETTINGS), "local")


def _schema_validator(schema: dict):
    from jsonschema import Draft202012Validator

    return Draft202012Validator({**schema, "components": document()["components"]})


def _request(op: Op, credentials: bool) -> tuple[str, dict[str, str], bytes | None]:
    doc_op = document()["paths"][op.openapi_path][op.method.lower()]
    path = op.openapi_path
    for p in op.params:
        if p.where == "path":
            path = path.replace("{" + p.name + "}", SECRET if p.name == "secret" else str(p.example))
    headers = {p.name: str(p.example) for p in op.params if p.where == "header"}
    body = None
    if "requestBody" in doc_op:
        example = dict(doc_op["requestBody"]["content"]["application/json"]["example"])
        if "ts" in example:  # a reading of now
            example.update(ts=int(time.time()), calibrated_at=int(time.time()) - 86400)
        body = json.dumps(example).encode()
        headers["content-type"] = "application/json"
    if credentials and op.security:
        scheme = op.security[-1]
        if scheme in TOKENS:
            headers["authorization"] = f"Bearer {TOKENS[scheme]}"
        elif scheme == "deviceSignature":
            headers["x-signature"] = hmac.new(b"device-key", body or b"", hashlib.sha256).hexdigest()
        elif scheme == "stripeSignature":
            headers["stripe-signature"] = stripe.WebhookSignature.generate_signature_header((body or b"").decode(), WHSEC)
    return path, headers, body


def _check(op: Op, r: httpx.Response) -> None:
    doc_op = document()["paths"][op.openapi_path][op.method.lower()]
    answer = doc_op["responses"].get(str(r.status_code))
    assert answer is not None, f"{op.method} {op.openapi_path}: undocumented status {r.status_code}: {r.text[:300]}"
    media, content = next(iter(answer.get("content", {"*/*": {}}).items()))
    if media == "application/json":
        errors = [e.message for e in _schema_validator(content["schema"]).iter_errors(r.json())]
        assert not errors, f"{op.method} {op.openapi_path} {r.status_code}: {errors} in {r.text[:300]}"
    if r.status_code == 429:
        assert int(r.headers["retry-after"]) >= 0


@pytest.mark.parametrize("credentials", [True, False], ids=["with-credentials", "without"])
def test_every_route_answers_its_documented_example_as_documented(app, credentials):
    async def go() -> list[tuple[Op, httpx.Response]]:
        transport = httpx.ASGITransport(app=app.asgi(), client=("127.0.0.1", 5555))
        async with httpx.AsyncClient(transport=transport, base_url="http://o") as client:
            out = []
            for op in ROUTES:
                path, headers, body = _request(op, credentials)
                out.append((op, await client.request(op.method, path, headers=headers, content=body)))
            return out

    answered = anyio.run(go)
    for op, r in answered:
        _check(op, r)
    statuses = {op.id: r.status_code for op, r in answered}
    if credentials:  # the examples get past the door: accepted, or refused for the state of the world (not indexed)
        assert statuses["verification"] == 201 and statuses["qr_order"] == 201 and statuses["iot_reading"] == 201
        # the example hash was never issued to this merchant (hashes are issued, not named); no Stripe API key here
        assert statuses["settlement"] == 404 and statuses["stripe"] == 503
        assert statuses["mpesa_push"] == 503  # no Daraja here
        assert statuses["mpesa_callback"] == 404 and statuses["docs"] == 200 and statuses["iot_proof"] == 200
    else:
        assert statuses["verification"] == statuses["qr_order"] == statuses["iot_reading"] == 401
        assert statuses["stripe"] == 400 and statuses["intent"] == 404


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_schemathesis_generated_requests_get_documented_answers(app, mode):
    """Requests schemathesis generates from the document the app serves (valid data, and data that breaks the
    schemas), for every operation, with and without a valid token: never an undocumented status, and content type,
    headers and body as documented (error codes included); a 5xx only where documented."""
    import schemathesis
    from schemathesis import checks
    from schemathesis.generation import GenerationMode

    schema = schemathesis.openapi.from_asgi("/openapi.json", app.asgi())
    chosen = [checks.status_code_conformance, checks.content_type_conformance, checks.response_headers_conformance,
              checks.response_schema_conformance]
    from hypothesis.errors import Unsatisfiable

    operations = [result.ok() for result in schema.get_all_operations()]
    unbreakable: set[str] = set()
    # every operation but the one the document was loaded from, which schemathesis leaves out
    assert {o.label for o in operations} == {f"{op.method} {op.openapi_path}" for op in ROUTES} - {"GET /openapi.json"}
    for operation in operations:
        raw = operation.definition.raw
        if mode == "negative" and not raw.get("parameters") and "requestBody" not in raw:
            continue  # nothing to break
        security = [name for req in raw.get("security", []) for name in req]
        token = next((TOKENS[s] for s in security if s in TOKENS), None)
        for headers in ({}, {"authorization": f"Bearer {token}"}) if token else ({},):
            try:
                _fuzz(operation, GenerationMode(mode), headers, chosen)
            except Unsatisfiable:  # schemathesis found no way to break this operation's schemas (any string fits)
                unbreakable.add(operation.label)
    assert unbreakable <= {"GET /docs/assets/{path}", "GET /intents/{key}"}, unbreakable  # any string is a valid path


def _fuzz(operation, mode, headers: dict[str, str], chosen: list) -> None:
    from hypothesis import HealthCheck, given, settings

    @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case) -> None:
        case.call_and_validate(headers=headers, checks=chosen)

    run()


def test_docs_page_renders_every_operation_offline_in_a_real_browser(tmp_path):
    """Headless Chromium (installed by .ci/run) opens /docs: Swagger UI renders one block per documented operation,
    and everything the page loaded came from the oracle itself."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from core.service import ThreadedServer
    from tests.browser import chromium

    with ThreadedServer(OracleApp(None, OracleSettings(), "x").asgi(), name="oracle-docs") as server, \
            chromium(tmp_path / "chromium-profile") as browser:
        browser.get(server.url + "/docs")
        WebDriverWait(browser, 60).until(lambda b: len(b.find_elements(By.CSS_SELECTOR, ".opblock")) == len(ROUTES))
        assert "carbonledger oracle" in browser.find_element(By.CSS_SELECTOR, ".info .title").text
        loaded = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert loaded and all(url.startswith(server.url + "/") for url in loaded), loaded
        assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        browser.save_screenshot(str(tmp_path / "docs.png"))
