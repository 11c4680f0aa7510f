"""M-Pesa (Daraja) STK push: initiate, and believe a callback only after Daraja's own status query agrees.

Callback checks, in order: secret path segment, source IP allowlist, schema, a known CheckoutRequestID (one we
initiated), then an STK push query to Daraja. ResultCode 0 from both, with the amount we asked for, becomes an
intent with payment reference = MpesaReceiptNumber; any other agreed code is recorded, no write; disagreement is
a spoof (409, nothing written). Real payloads vary: ResultCode may be a string, an item may lack `Value`.
Phone numbers are read by nobody here: never stored, never logged.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx

from oracle.ingress.common import BadRequest
from oracle.outbox import Event, Intent


@dataclass(frozen=True)
class StkCallback:
    merchant_request_id: str
    checkout_request_id: str
    result_code: int
    result_desc: str
    amount: Decimal | None
    receipt: str | None


def _code(v: Any, field: str) -> int:
    if isinstance(v, bool):
        raise BadRequest(400, "invalid_callback", f"{field} must be a number")
    if isinstance(v, int):
        return v
    if isinstance(v, str) and v.strip().lstrip("-").isdigit():
        return int(v.strip())
    raise BadRequest(400, "invalid_callback", f"{field} must be a number")


def parse_callback(data: Any) -> StkCallback:
    """Body.stkCallback -> StkCallback; BadRequest(400) on anything else. Only the fields we act on are kept."""
    cb = data.get("Body", {}).get("stkCallback") if isinstance(data, dict) and isinstance(data.get("Body"), dict) else None
    if not isinstance(cb, dict):
        raise BadRequest(400, "invalid_callback", "body must be {Body: {stkCallback: {...}}}")
    mid, cid = cb.get("MerchantRequestID"), cb.get("CheckoutRequestID")
    if not isinstance(mid, str) or not isinstance(cid, str) or not cid or len(cid) > 100:
        raise BadRequest(400, "invalid_callback", "MerchantRequestID and CheckoutRequestID must be strings")
    code = _code(cb.get("ResultCode"), "ResultCode")
    desc = cb.get("ResultDesc") if isinstance(cb.get("ResultDesc"), str) else ""
    amount = receipt = None
    meta = cb.get("CallbackMetadata")
    if meta is not None:
        items = meta.get("Item") if isinstance(meta, dict) else None
        if not isinstance(items, list):
            raise BadRequest(400, "invalid_callback", "CallbackMetadata.Item must be a list")
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("Name"), str):
                raise BadRequest(400, "invalid_callback", "each CallbackMetadata item needs a Name")
            name, value = item["Name"], item.get("Value")  # Value may be absent (e.g. Balance)
            if name == "Amount" and value is not None:
                try:
                    amount = Decimal(str(value))
                except InvalidOperation:
                    raise BadRequest(400, "invalid_callback", "Amount is not a number") from None
                if not amount.is_finite() or amount <= 0:
                    raise BadRequest(400, "invalid_callback", "Amount must be positive")
            elif name == "MpesaReceiptNumber" and value is not None:
                if not isinstance(value, str) or not value.isalnum() or len(value) > 32:
                    raise BadRequest(400, "invalid_callback", "MpesaReceiptNumber must be alphanumeric")
                receipt = value
    if code == 0 and (amount is None or receipt is None):
        raise BadRequest(400, "invalid_callback", "a successful callback needs Amount and MpesaReceiptNumber")
    return StkCallback(mid, cid, code, desc[:200], amount, receipt)


def ip_allowed(host: str | None, allowed: list[str]) -> bool:
    """True when `host` is inside one of the allowlisted IPs/CIDRs (an empty list allows nobody)."""
    if not host:
        return False
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(n, strict=False) for n in allowed)


def decide(cb: StkCallback, request_row: dict[str, Any], query_code: int) -> tuple[Event, Intent | None, str]:
    """Given our request row and Daraja's own answer: (event, intent or None, new request status)."""
    if query_code != cb.result_code:
        raise BadRequest(409, "callback_disputed", "Daraja's status query does not confirm this callback")
    summary = {"checkout_request_id": cb.checkout_request_id, "result_code": cb.result_code,
               "result_desc": cb.result_desc, "amount": str(cb.amount) if cb.amount is not None else None,
               "receipt": cb.receipt}
    if cb.result_code != 0:
        return Event("mpesa", cb.checkout_request_id, "stk.failed", summary), None, "failed"
    if cb.amount != Decimal(request_row["amount"]):
        raise BadRequest(409, "amount_mismatch", "callback amount differs from the requested amount")
    target = request_row["target"]
    key = f"mpesa:{cb.receipt}"
    if "order_id" in target:
        intent = Intent(key, "mpesa", "Escrow", "recordOffchainPayment", [str(target["order_id"]), cb.receipt])
    else:
        intent = Intent(key, "mpesa", "Marketplace", "settleOffchain",
                        [str(target["listing_id"]), target["buyer"], str(target["amount"]), cb.receipt])
    return Event("mpesa", cb.checkout_request_id, "stk.succeeded", summary, cb.receipt), intent, "paid"


def unmatched(cb: StkCallback) -> Event:
    """A confirmed payment that no single STK push of ours can be matched to: kept, flagged for a human."""
    summary = {"checkout_request_id": cb.checkout_request_id, "result_code": cb.result_code,
               "amount": str(cb.amount) if cb.amount is not None else None, "receipt": cb.receipt}
    return Event("mpesa", cb.checkout_request_id, "stk.unmatched", summary, cb.receipt, flag="unmatched_payment")


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
            self._token = (time.monotonic() + max(int(body.get("expires_in", 3599)) - 60, 30), body["access_token"])
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
        return _code(body.get("ResultCode"), "query ResultCode")

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
