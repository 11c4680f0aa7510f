"""IoT readings: per-device HMAC, schema/range/timestamp checks, anomaly flags, quality score, RFC 8785 leaf.

A device signs the raw body: header `X-Signature: hex(HMAC-SHA256(device key, body))`, device named in the body.
Hard limits (physically impossible values) refuse the reading; the seed design's anomaly flags (outside the
normal band, >3 sigma spike against the device's recent readings, stale calibration, low battery) keep it but
lower its quality score (basis points, 0..10000, as `IoTAnchor.anchor` takes it).
"""

from __future__ import annotations

import hashlib
import hmac
import statistics
from dataclasses import dataclass
from typing import Any

import rfc8785

from chains.merkle import hash_leaf
from oracle.api.fields import parse
from oracle.api.models import METRICS, IoTReading
from oracle.ingress.auth import AuthFailure, same_secret

CALIBRATION_MAX_AGE_S = 180 * 86400
LOW_BATTERY_PCT = 15
PENALTY = {"out_of_range": 3000, "spike": 3000, "calibration_stale": 2000, "low_battery": 1000}


@dataclass(frozen=True)
class Reading:
    device_id: str
    ts: int
    metrics: dict[str, float]
    battery_pct: float | None
    calibrated_at: int | None
    canonical: str

    @property
    def leaf(self) -> bytes:
        return hash_leaf(self.canonical.encode())


def check_signature(body: bytes, signature: str | None, key: str | None) -> None:
    """401 unless `signature` is the device key's HMAC of the body. Unknown devices look the same as bad MACs."""
    if key is None or not signature:
        raise AuthFailure(401, "unauthorized", "unknown device or missing X-Signature")
    want = hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
    if not same_secret(signature.strip().lower(), want):  # any header bytes: never a TypeError
        raise AuthFailure(401, "unauthorized", "bad device signature")


def parse_reading(data: Any, now: int, max_skew_s: int, max_age_s: int) -> Reading:
    """Schema, hard ranges and timestamp window (`IoTReading`); the leaf is made of the canonical form (RFC 8785) of
    the body as sent, not of the model."""
    r = parse(IoTReading, data, now=now, max_skew_s=max_skew_s, max_age_s=max_age_s)
    return Reading(r.device_id, r.ts, dict(r.metrics), r.battery_pct, r.calibrated_at, rfc8785.dumps(data).decode())


def assess(r: Reading, recent: dict[str, list[float]]) -> tuple[list[str], int]:
    """Anomaly flags and quality score (10000 = clean). `recent` holds the device's last values per metric."""
    flags: list[str] = []
    for name, value in r.metrics.items():
        _, _, nlo, nhi = METRICS[name]
        if not nlo <= value <= nhi:
            flags.append(f"out_of_range:{name}")
        hist = recent.get(name) or []
        if len(hist) >= 5:
            mu, sd = statistics.fmean(hist), statistics.pstdev(hist)
            if sd > 0 and abs(value - mu) > 3 * sd:
                flags.append(f"spike:{name}")
    if r.calibrated_at is None or r.ts - r.calibrated_at > CALIBRATION_MAX_AGE_S:
        flags.append("calibration_stale")
    if r.battery_pct is not None and r.battery_pct < LOW_BATTERY_PCT:
        flags.append("low_battery")
    kinds = {f.split(":", 1)[0] for f in flags}
    return flags, max(0, 10000 - sum(PENALTY[k] for k in kinds))
