"""Ingress parsers on arbitrary input (hypothesis) and on the real fixtures: they return a value or a BadRequest,
never anything else, and they keep no personal data."""

from __future__ import annotations

import json
import time
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chains.merkle import hash_leaf
from oracle.ingress import iot, mpesa, stripe_webhook
from oracle.ingress.common import BadRequest
from oracle.testing import WHSEC, payment_event, signed

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20,
)
ADDR = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


# ---- Stripe ------------------------------------------------------------------------------------------------
def test_stripe_signature_window_and_rotation():
    body, h = signed(payment_event("pi_1", {"order_id": "3"}))
    stripe_webhook.verify(body, h["stripe-signature"], ["whsec_new", WHSEC], 300, 60)
    with pytest.raises(BadRequest, match="no valid"):
        stripe_webhook.verify(body, h["stripe-signature"], ["whsec_other"], 300, 60)
    now = time.time()
    with pytest.raises(BadRequest) as e:
        stripe_webhook.verify(body, h["stripe-signature"], [WHSEC], 300, 60, now=now + 301)
    assert e.value.code == "stale_timestamp"
    with pytest.raises(BadRequest) as e:
        stripe_webhook.verify(body, h["stripe-signature"], [WHSEC], 300, 60, now=now - 61)
    assert e.value.code == "future_timestamp"


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200), st.text(max_size=80))
def test_stripe_verify_only_raises_bad_request(body, header):
    with pytest.raises(BadRequest):
        stripe_webhook.verify(body, header, [WHSEC], 300, 60)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_stripe_derive_total(value):
    event = value if isinstance(value, dict) else {"id": "evt_1", "type": "payment_intent.succeeded",
                                                    "data": {"object": {"id": "pi_x", "metadata": value}}}
    try:
        ev, intent = stripe_webhook.derive(event)
    except BadRequest as err:
        assert 400 <= err.status < 500
        return
    assert ev.provider == "stripe"
    if intent is not None:
        assert intent.key == f"stripe:{intent.args[-1]}"


@given(st.sampled_from(["1", "42", 7]), st.integers(1, 10**30))
def test_stripe_targets(listing, amount):
    _, i = stripe_webhook.derive(payment_event("pi_a", {"listing_id": listing, "buyer": ADDR, "amount": str(amount)}))
    assert (i.contract, i.function, i.args) == ("Marketplace", "settleOffchain", [str(listing), ADDR, str(amount), "pi_a"])
    _, i = stripe_webhook.derive(payment_event("pi_b", {"order_id": "9", "listing_id": "1"}))
    assert (i.contract, i.args) == ("Escrow", ["9", "pi_b"])
    ev, i = stripe_webhook.derive(payment_event("pi_c", {"order_id": "-1"}))
    assert i is None and ev.flag == "invalid_metadata"


def test_stripe_fixture_objects(fixtures_dir):
    res = json.loads((fixtures_dir / "stripe/stripe_fixtures3_subset_payments.json").read_text())["resources"]
    ev, i = stripe_webhook.derive(res["event"])
    assert i is None and ev.summary == {"ignored": True}
    pi = res["payment_intent"]
    ev, i = stripe_webhook.derive({"id": "evt_x", "type": "payment_intent.succeeded", "data": {"object": pi}})
    assert i is None and ev.payment_ref == pi["id"]  # real PaymentIntent without our metadata: nothing to write
    ev, _ = stripe_webhook.derive({"id": "evt_d", "type": "charge.dispute.created", "data": {"object": res["dispute"]}})
    assert ev.flag == "dispute"


# ---- M-Pesa ------------------------------------------------------------------------------------------------
def test_mpesa_fixture(fixtures_dir):
    sample = json.loads((fixtures_dir / "mpesa/stk_callback_success_safaricom_sample.json").read_text())["samples"][0]
    cb = mpesa.parse_callback(sample)
    assert (cb.result_code, cb.amount, cb.receipt) == (0, Decimal(1), "LGR7OWQX0R")
    assert "254721566839" not in repr(cb)  # the phone number is never kept
    sample["Body"]["stkCallback"]["ResultCode"] = "0"
    assert mpesa.parse_callback(sample).result_code == 0
    ev, intent, status = mpesa.decide(cb, {"amount": 1, "target": {"order_id": "4"}}, 0)
    assert status == "paid" and intent.args == ["4", "LGR7OWQX0R"] and intent.key == "mpesa:LGR7OWQX0R"
    with pytest.raises(BadRequest) as e:
        mpesa.decide(cb, {"amount": 1, "target": {"order_id": "4"}}, 1032)
    assert e.value.status == 409
    with pytest.raises(BadRequest):
        mpesa.decide(cb, {"amount": 2, "target": {"order_id": "4"}}, 0)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_mpesa_parse_total(value):
    for data in (value, {"Body": {"stkCallback": value}},
                 {"Body": {"stkCallback": {"MerchantRequestID": "m", "CheckoutRequestID": "c", "ResultCode": value,
                                           "CallbackMetadata": {"Item": [{"Name": "Amount", "Value": value}]}}}}):
        try:
            mpesa.parse_callback(data)
        except BadRequest as err:
            assert err.status == 400


def test_ip_allowlist():
    assert mpesa.ip_allowed("196.201.214.200", ["196.201.214.0/24"])
    assert not mpesa.ip_allowed("10.0.0.1", ["196.201.214.0/24"])
    assert not mpesa.ip_allowed("127.0.0.1", [])
    assert not mpesa.ip_allowed("not-an-ip", ["0.0.0.0/0"])


# ---- IoT ---------------------------------------------------------------------------------------------------
NOW = 1_800_000_000


def reading(**kw):
    return {"device_id": "d-1", "ts": NOW - 10, "metrics": {"co2_ppm": 420.5}, "battery_pct": 90,
            "calibrated_at": NOW - 86400, **kw}


def test_iot_canonical_and_flags():
    a = iot.parse_reading(reading(), NOW, 300, 86400)
    b = iot.parse_reading(dict(reversed(list(reading().items()))), NOW, 300, 86400)
    assert a.canonical == b.canonical and a.leaf == hash_leaf(a.canonical.encode())
    assert iot.assess(a, {"co2_ppm": [420.0] * 10}) == ([], 10000)
    spiky = iot.parse_reading(reading(metrics={"co2_ppm": 4900}, battery_pct=5, calibrated_at=NOW - 400 * 86400), NOW, 300, 86400)
    flags, q = iot.assess(spiky, {"co2_ppm": [420, 421, 419, 422, 418]})
    assert set(flags) == {"spike:co2_ppm", "calibration_stale", "low_battery"} and q == 10000 - 3000 - 2000 - 1000
    flags, _ = iot.assess(iot.parse_reading(reading(metrics={"co2_ppm": 9000}), NOW, 300, 86400), {})
    assert "out_of_range:co2_ppm" in flags
    for bad in (reading(ts=NOW + 3600), reading(ts=NOW - 10**6), reading(metrics={"co2_ppm": -5}),
                reading(metrics={"x": 1}), reading(extra=1), reading(device_id="a b"), reading(metrics={})):
        with pytest.raises(BadRequest):
            iot.parse_reading(bad, NOW, 300, 86400)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_iot_parse_total(value):
    for data in (value, reading(metrics=value), reading(ts=value), reading(battery_pct=value)):
        try:
            r = iot.parse_reading(data, NOW, 300, 86400)
        except BadRequest as err:
            assert err.status in (400, 422)
        else:
            assert 0 <= iot.assess(r, {})[1] <= 10000


def test_iot_hmac():
    import hashlib
    import hmac

    body = b'{"a":1}'
    iot.check_signature(body, hmac.new(b"k", body, hashlib.sha256).hexdigest(), "k")
    for sig, key in (("00", "k"), (None, "k"), (hmac.new(b"k", body, hashlib.sha256).hexdigest(), None)):
        with pytest.raises(BadRequest) as e:
            iot.check_signature(body, sig, key)
        assert e.value.status == 401
