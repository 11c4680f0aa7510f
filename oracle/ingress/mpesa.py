"""M-Pesa (Daraja) STK push: initiate, and believe a callback only after Daraja's own status query agrees.

Callback checks, in order: secret path segment, source IP allowlist, schema (every number through the bounded
parsers of `common`), a known CheckoutRequestID (one we initiated), then an STK push query to Daraja. ResultCode 0
from both becomes a payment claim (payment reference = MpesaReceiptNumber) that `oracle.payments` checks against
the push (same amount) and the indexed order/listing (price, currency KES, not paid already) before any write; one
checkout pays at most once (a database constraint), so a second receipt for it is only ever a flagged event. Any
other agreed code is recorded, no write; disagreement is a spoof (409, nothing written). Real payloads vary:
ResultCode may be a string, an item may lack `Value`, Amount may be 1, 1.0 or "1.00".
Phone numbers are checked for shape and then dropped: never stored, never logged.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import time
from dataclasses import dataclass
from typing import Any

import httpx

from oracle.api.fields import parse
from oracle.api.models import MpesaCallback
from oracle.ingress.common import BadRequest, parse_amount, parse_int
from oracle.outbox import Event
from oracle.payments import Claim, Target

CURRENCY, DECIMALS = "kes", 2  # Daraja amounts are Kenyan shillings; claims carry cents so KES fits fiat_rates
_CODE = {"lo": -(2**31), "hi": 2**31 - 1}  # Daraja result codes (0, 1032, 500001001, ...) fit an int32


@dataclass(frozen=True)
class StkCallback:
    merchant_request_id: str
    checkout_request_id: str
    result_code: int
    result_desc: str
    amount: int | None  # KES cents (Daraja sends shillings: 1, 1.0, "1.00")
    receipt: str | None
    transaction_date: int | None  # YYYYMMDDHHMMSS as Daraja sends it

    @property
    def whole_kes(self) -> int | None:
        """The amount in whole shillings (what an STK push asks for), None when absent or fractional."""
        return None if self.amount is None or self.amount % 100 else self.amount // 100

    def summary(self) -> dict[str, Any]:
        """What a provider event keeps: ids, codes and amounts, no personal data."""
        return {"checkout_request_id": self.checkout_request_id, "result_code": self.result_code,
                "result_desc": self.result_desc, "amount_minor": self.amount, "currency": CURRENCY,
                "receipt": self.receipt, "transaction_date": self.transaction_date}

    @property
    def event_id(self) -> str:
        """One provider event per (checkout, receipt): a second receipt for a checkout is a separate, flagged event."""
        return f"{self.checkout_request_id}:{self.receipt}" if self.receipt else self.checkout_request_id


def _bad(message: str) -> BadRequest:
    return BadRequest(400, "invalid_callback", message)


def parse_callback(data: Any) -> StkCallback:
    """Body.stkCallback -> StkCallback; BadRequest(400) on anything else. Only the fields we act on are kept."""
    cb = parse(MpesaCallback, data).Body.stkCallback  # shape, id lengths, ResultCode (bounded), items named
    bounded = {"status": 400, "code": "invalid_callback"}
    found: dict[str, Any] = {}
    for item in cb.CallbackMetadata.Item if cb.CallbackMetadata else ():
        name, value = item.Name, item.Value  # Value may be absent (e.g. Balance)
        if value is None or name not in ("Amount", "MpesaReceiptNumber", "TransactionDate", "PhoneNumber"):
            continue
        if name in found:
            raise _bad(f"CallbackMetadata has {name} twice")
        if name == "Amount":
            found[name] = parse_amount(value, "Amount", decimals=DECIMALS, **bounded)
            if found[name] <= 0:
                raise _bad("Amount must be positive")
        elif name == "MpesaReceiptNumber":
            if not isinstance(value, str) or not value.isascii() or not value.isalnum() or len(value) > 32:
                raise _bad("MpesaReceiptNumber must be alphanumeric")
            found[name] = value
        elif name == "TransactionDate":
            found[name] = parse_int(value, "TransactionDate", hi=99_999_999_999_999, **bounded)
        else:  # checked for shape only, then dropped: personal data
            parse_int(value, "PhoneNumber", hi=10**15 - 1, **bounded)
            found[name] = True
    amount, receipt = found.get("Amount"), found.get("MpesaReceiptNumber")
    if cb.ResultCode == 0 and (amount is None or receipt is None):
        raise _bad("a successful callback needs Amount and MpesaReceiptNumber")
    return StkCallback(cb.MerchantRequestID, cb.CheckoutRequestID, cb.ResultCode, cb.ResultDesc[:200], amount, receipt,
                       found.get("TransactionDate"))


def ip_allowed(host: str | None, allowed: list[str]) -> bool:
    """True when `host` is inside one of the allowlisted IPs/CIDRs (an empty list allows nobody)."""
    if not host:
        return False
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(n, strict=False) for n in allowed)


def confirm(cb: StkCallback, query_code: int) -> None:
    """BadRequest(409) unless Daraja's own STK status query (`query_code`) agrees with the callback: a spoof otherwise."""
    if query_code != cb.result_code:
        raise BadRequest(409, "callback_disputed", "Daraja's status query does not confirm this callback")


def decide(cb: StkCallback, request_row: dict[str, Any], query_code: int) -> tuple[Event, Claim | None, str]:
    """Given our request row and Daraja's own answer: (event, payment claim or None, new request status). The
    claim still has to pass `oracle.payments` (amount as pushed, price, one payment per checkout) to become a write."""
    confirm(cb, query_code)
    if cb.result_code != 0:
        return Event("mpesa", cb.event_id, "stk.failed", cb.summary()), None, "failed"
    target = Target.from_json(request_row["target"])
    claim = Claim("mpesa", cb.checkout_request_id, cb.receipt, target, cb.amount, CURRENCY,  # type: ignore[arg-type]
                  expected_amount=int(request_row["amount"]) * 10**DECIMALS)
    return Event("mpesa", cb.event_id, "stk.succeeded", cb.summary(), cb.receipt), claim, "paid"


def unmatched(cb: StkCallback) -> Event:
    """A confirmed payment that no single STK push of ours can be matched to: kept, flagged for a human."""
    return Event("mpesa", cb.event_id, "stk.unmatched", cb.summary(), cb.receipt, flag="unmatched_payment")


class Daraja:
    """Just enough of the Daraja API: OAuth token (cached), STK push, STK push query."""

    def __init__(self, base: str, key: str, secret: str, shortcode: str, passkey: str, timeout_s: float = 10.0) -> None:
        self.base, self.shortcode, self._passkey = base.rstrip("/"), shortcode, passkey
        self._auth = (key, secret)
        self._http = httpx.AsyncClient(timeout=timeout_s)
        self._token: tuple[float, str] | None = None

    async def _bearer(self) -> str:
        if self._token is None or time.monotonic() > self._token[0]:
            r = await self._http.get(f"{self.base}/oauth/v1/generate", params={"grant_type": "client_credentials"},
                                     auth=self._auth)
            r.raise_for_status()
            body = r.json()
            expires = parse_int(body.get("expires_in", 3599), "expires_in", hi=10**7, status=502, code="bad_response")
            self._token = (time.monotonic() + max(expires - 60, 30), body["access_token"])
        return self._token[1]

    def _password(self) -> tuple[str, str]:
        ts = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d%H%M%S")
        return base64.b64encode(f"{self.shortcode}{self._passkey}{ts}".encode()).decode(), ts

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        r = await self._http.post(f"{self.base}{path}", json=body,
                                  headers={"authorization": f"Bearer {await self._bearer()}"})
        if r.status_code == 401:  # token expired early: one fresh try
            self._token = None
            r = await self._http.post(f"{self.base}{path}", json=body,
                                      headers={"authorization": f"Bearer {await self._bearer()}"})
        r.raise_for_status()
        return r.json()

    async def stk_query(self, checkout_request_id: str) -> int:
        """Daraja's ResultCode for the checkout (string or int on the wire)."""
        password, ts = self._password()
        body = await self._post("/mpesa/stkpushquery/v1/query", {
            "BusinessShortCode": self.shortcode, "Password": password, "Timestamp": ts,
            "CheckoutRequestID": checkout_request_id})
        return parse_int(body.get("ResultCode"), "query ResultCode", **_CODE, status=502, code="bad_response")

    async def stk_push(self, phone: str, amount: int, callback_url: str, reference: str) -> tuple[str, str]:
        """Start a push; returns (MerchantRequestID, CheckoutRequestID). `phone` goes to Daraja and nowhere else."""
        password, ts = self._password()
        body = await self._post("/mpesa/stkpush/v1/processrequest", {
            "BusinessShortCode": self.shortcode, "Password": password, "Timestamp": ts,
            "TransactionType": "CustomerPayBillOnline", "Amount": amount, "PartyA": phone, "PartyB": self.shortcode,
            "PhoneNumber": phone, "CallBackURL": callback_url, "AccountReference": reference[:12],
            "TransactionDesc": "carbonledger"})
        if str(body.get("ResponseCode")) != "0":
            raise RuntimeError(f"STK push refused: {body.get('ResponseDescription', 'unknown')}")
        return body["MerchantRequestID"], body["CheckoutRequestID"]

    async def aclose(self) -> None:
        await self._http.aclose()


def make_daraja(settings: Any) -> Daraja | None:
    """The Daraja client of the oracle's settings; None where its credentials are not configured."""
    if not (settings.mpesa_consumer_key and settings.mpesa_consumer_secret and settings.mpesa_passkey):
        return None
    return Daraja(settings.mpesa_api_base, settings.mpesa_consumer_key.get_secret_value(),
                  settings.mpesa_consumer_secret.get_secret_value(), settings.mpesa_shortcode,
                  settings.mpesa_passkey.get_secret_value())
