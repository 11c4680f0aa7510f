"""Ingress parsers on arbitrary input (hypothesis) and on the real fixtures: they return a value or a BadRequest,
never anything else, and they keep no personal data."""

from __future__ import annotations

import gc
import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chains.merkle import hash_leaf
from oracle.ingress import iot, mpesa, stripe_webhook
from core.config import OracleSettings
from oracle.ingress.common import BadRequest, parse_amount, parse_int
from oracle.testing import FIAT_RATES, WHSEC, payment_event, signed

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


SETTINGS = OracleSettings(fiat_rates=FIAT_RATES)


def _pi(pi_id: str = "pi_x", **kw) -> dict:
    return {"id": pi_id, "object": "payment_intent", "status": "succeeded", "livemode": False, "currency": "usd",
            "amount": 1099, "amount_received": 1099, "metadata": {}, **kw}


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_stripe_derive_and_assess_total(value):
    """Whatever a signed body or Stripe's API object holds: an event (maybe flagged) and maybe a claim, or a 4xx."""
    event = value if isinstance(value, dict) else {"id": "evt_1", "type": "payment_intent.succeeded",
                                                    "data": {"object": {"id": "pi_x", "metadata": value}}}
    try:
        ev, pi_id = stripe_webhook.derive(event)
    except BadRequest as err:
        assert 400 <= err.status < 500
        return
    assert ev.provider == "stripe"
    if pi_id is None:
        return
    for pi in (_pi(pi_id, metadata=value), _pi(pi_id, amount_received=value, metadata={"order_id": "1"}),
               _pi(pi_id, currency=value, metadata={"order_id": "1"}), _pi(pi_id, status=value, livemode=value)):
        out, claim = stripe_webhook.assess(ev, pi, SETTINGS)
        assert out.payment_ref == pi_id and (claim is None or (claim.key == f"stripe:{pi_id}" and out.flag is None))


@given(st.sampled_from(["1", "42", 7]), st.integers(1, 10**30))
def test_stripe_targets(listing, amount):
    ev, pi_id = stripe_webhook.derive(payment_event("pi_a", {}))
    meta = {"listing_id": listing, "buyer": ADDR, "amount": str(amount)}
    _, c = stripe_webhook.assess(ev, _pi(pi_id, metadata=meta), SETTINGS)
    i = c.target.intent(c.key, "stripe", c.payment_ref)
    assert (i.contract, i.function, i.args) == ("Marketplace", "settleOffchain", [str(listing), ADDR, str(amount), "pi_a"])
    assert (c.amount, c.currency, c.decimals) == (1099, "usd", 2)
    _, c = stripe_webhook.assess(ev, _pi(pi_id, metadata={"order_id": "9", "listing_id": "1"}), SETTINGS)
    i = c.target.intent(c.key, "stripe", c.payment_ref)
    assert (i.contract, i.args) == ("Escrow", ["9", "pi_a"])
    for bad in ({"order_id": "-1"}, {"order_id": " 9"}, {"order_id": "9" * 79}, {"listing_id": "1", "amount": "2"}):
        e, c = stripe_webhook.assess(ev, _pi(pi_id, metadata=bad), SETTINGS)
        assert c is None and e.flag == "invalid_metadata"
    assert stripe_webhook.assess(ev, _pi(pi_id, metadata=meta, status="processing"), SETTINGS)[0].flag == \
        "payment_not_succeeded"
    assert stripe_webhook.assess(ev, _pi(pi_id, metadata=meta, livemode=True), SETTINGS)[0].flag == "livemode_mismatch"
    assert stripe_webhook.assess(ev, None, SETTINGS)[0].flag == "payment_not_found"
    assert stripe_webhook.assess(ev, _pi("pi_other", metadata=meta), SETTINGS)[0].flag == "payment_not_found"


def test_stripe_fixture_objects(fixtures_dir):
    res = json.loads((fixtures_dir / "stripe/stripe_fixtures3_subset_payments.json").read_text())["resources"]
    ev, pi_id = stripe_webhook.derive(res["event"])
    assert pi_id is None and ev.summary == {"ignored": True}
    pi = res["payment_intent"]
    ev, pi_id = stripe_webhook.derive({"id": "evt_x", "type": "payment_intent.succeeded", "data": {"object": pi}})
    assert pi_id == pi["id"]
    out, claim = stripe_webhook.assess(ev, pi, SETTINGS)
    assert claim is None and out.flag is None  # real PaymentIntent without our metadata: nothing to write
    out, claim = stripe_webhook.assess(ev, {**pi, "metadata": {"order_id": "3"}}, SETTINGS)
    assert claim is None and out.flag == "payment_not_succeeded" and out.summary["amount_minor"] == 0
    ev, _ = stripe_webhook.derive({"id": "evt_d", "type": "charge.dispute.created", "data": {"object": res["dispute"]}})
    assert ev.flag == "dispute"


# ---- M-Pesa ------------------------------------------------------------------------------------------------
def test_mpesa_fixture(fixtures_dir):
    sample = json.loads((fixtures_dir / "mpesa/stk_callback_success_safaricom_sample.json").read_text())["samples"][0]
    cb = mpesa.parse_callback(sample)
    assert (cb.result_code, cb.amount, cb.whole_kes, cb.receipt) == (0, 100, 1, "LGR7OWQX0R")
    assert cb.transaction_date == 20170727154800
    assert "254721566839" not in repr(cb)  # the phone number is never kept
    sample["Body"]["stkCallback"]["ResultCode"] = "0"
    assert mpesa.parse_callback(sample).result_code == 0
    ev, claim, status = mpesa.decide(cb, {"amount": 1, "target": {"order_id": "4"}}, 0)
    assert status == "paid" and ev.event_id == "ws_CO_27072017154747416:LGR7OWQX0R"
    assert (claim.payment_id, claim.payment_ref, claim.amount, claim.expected_amount, claim.currency) == \
        ("ws_CO_27072017154747416", "LGR7OWQX0R", 100, 100, "kes")
    i = claim.target.intent(claim.key, "mpesa", claim.payment_ref)
    assert i.args == ["4", "LGR7OWQX0R"] and i.key == "mpesa:LGR7OWQX0R"
    with pytest.raises(BadRequest) as e:
        mpesa.decide(cb, {"amount": 1, "target": {"order_id": "4"}}, 1032)
    assert e.value.status == 409
    _, claim, _ = mpesa.decide(cb, {"amount": 2, "target": {"order_id": "4"}}, 0)
    assert claim.expected_amount == 200  # a mismatch is for oracle.payments to flag, not a refusal
    for amount, cents in ((1.0, 100), ("1.00", 100), ("1.5", 150), (1.1, 110), ("0012", 1200)):
        sample["Body"]["stkCallback"]["CallbackMetadata"]["Item"][0]["Value"] = amount
        assert mpesa.parse_callback(sample).amount == cents


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_mpesa_parse_total(value):
    def cb(code, **items):
        return {"Body": {"stkCallback": {"MerchantRequestID": "m", "CheckoutRequestID": "c", "ResultCode": code,
                                         "CallbackMetadata": {"Item": [{"Name": k, "Value": v} for k, v in items.items()]}}}}

    for data in (value, {"Body": {"stkCallback": value}}, cb(value, Amount=value),
                 cb(0, Amount=1, MpesaReceiptNumber="R1", TransactionDate=value, PhoneNumber=value)):
        try:
            mpesa.parse_callback(data)
        except BadRequest as err:
            assert err.status == 400


# ---- the bounded parsers every provider number goes through ---------------------------------------------------
HUGE = ["1e200000", "1e1000000", "0" * 4301, "9" * 10**6, "-" + "1" * 5000, "1" * 100 + ".5", "1." + "0" * 10**5,
        "١٢٣", "1_000", " 1", "1 ", "+1", "0x10", "NaN", "Infinity", "", "1.2.3", "1e3"]
numbers = (st.text(max_size=40) | st.text(alphabet="0123456789.-e+", max_size=400) | st.integers() | st.booleans()
           | st.floats() | st.none() | st.sampled_from(HUGE) | st.lists(st.integers(), max_size=2))


@settings(max_examples=1000, deadline=None)
@given(numbers, st.integers(0, 6))
def test_bounded_parsers_are_total_exact_and_fast(v, decimals):
    """Any input: an int within the bounds or a BadRequest, cheaply, never an int() of an uncapped string (Python's
    4,300-digit limit, quadratic time: "1e1000000" took 166 s). CPU time of this thread, so a loaded machine does not
    fail it; the bound is far above a bounded parse and far below an unbounded one."""
    for parse in (lambda: parse_int(v, "f", lo=-(2**31), hi=2**31 - 1, status=400),
                  lambda: parse_int(v, "f"), lambda: parse_amount(v, "f", decimals=decimals)):
        gc.disable()  # a full collection of the whole test process's heap inside a timed parse is not the parser's cost
        try:
            t0 = time.thread_time()
            try:
                n = parse()
            except BadRequest as err:
                assert err.status in (400, 422) and "f" in err.message
            else:
                assert isinstance(n, int) and not isinstance(n, bool)
            assert time.thread_time() - t0 < 0.25
        finally:
            gc.enable()
    if isinstance(v, str) and v.isascii() and v.isdigit() and len(v) <= 12:
        assert parse_int(v, "f") == int(v)
        if int(v) * 10**decimals <= 10**15:  # parse_amount's default cap, in minor units
            assert parse_amount(v, "f", decimals=decimals) == int(v) * 10**decimals
        else:
            with pytest.raises(BadRequest):
                parse_amount(v, "f", decimals=decimals)


def test_bounded_parsers_refuse_what_they_must():
    for v in HUGE:
        for parse in (lambda: parse_int(v, "f"), lambda: parse_amount(v, "f", decimals=2)):
            with pytest.raises(BadRequest):
                parse()
    assert parse_int("-5", "f", lo=-10) == -5 and parse_int(2**256 - 1, "f") == 2**256 - 1
    for bad in (True, 1.0, 2**256, -1, "1" * 79):
        with pytest.raises(BadRequest):
            parse_int(bad, "f")
    assert parse_amount("12.50", "f", decimals=2) == 1250 and parse_amount(0.1, "f", decimals=2) == 10
    for bad in (-1, "1.005", float("inf"), 1e300, 10**14, "1e2"):
        with pytest.raises(BadRequest):
            parse_amount(bad, "f", decimals=2)


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
