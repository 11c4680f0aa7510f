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
from oracle.ingress.auth import AuthFailure, same_secret
from oracle.ingress.common import BadRequest

# metric -> (hard min, hard max, normal min, normal max)
METRICS: dict[str, tuple[float, float, float, float]] = {
    "co2_ppm": (0, 50_000, 300, 5_000),
    "temperature_c": (-60, 100, -20, 50),
    "humidity_pct": (0, 100, 5, 95),
    "energy_kwh": (0, 1e9, 0, 1e6),
    "methane_ppm": (0, 100_000, 0, 1_000),
}
CALIBRATION_MAX_AGE_S = 180 * 86400
LOW_BATTERY_PCT = 15
PENALTY = {"out_of_range": 3000, "spike": 3000, "calibration_stale": 2000, "low_battery": 1000}
_FIELDS = {"device_id", "ts", "metrics", "battery_pct", "calibrated_at"}


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


def _num(v: Any, field: str) -> float | int:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v in (float("inf"), float("-inf")):
        raise BadRequest(422, "invalid_field", f"{field} must be a finite number")
    return v


def parse_reading(data: Any, now: int, max_skew_s: int, max_age_s: int) -> Reading:
    """Schema, hard ranges and timestamp window; returns the canonical form (RFC 8785) the leaf is made of."""
    if not isinstance(data, dict):
        raise BadRequest(400, "malformed_json", "body must be a JSON object")
    extra = set(data) - _FIELDS
    if extra:
        raise BadRequest(422, "unknown_field", f"unknown field {sorted(extra)[0]!r}")
    dev = data.get("device_id")
    if not isinstance(dev, str) or not (1 <= len(dev) <= 64) or not dev.replace("-", "").replace("_", "").isalnum():
        raise BadRequest(422, "invalid_field", "device_id must be 1-64 letters, digits, - or _")
    ts = data.get("ts")
    if isinstance(ts, bool) or not isinstance(ts, int):
        raise BadRequest(422, "invalid_field", "ts must be unix seconds (integer)")
    if ts > now + max_skew_s:
        raise BadRequest(422, "future_timestamp", "ts is in the future")
    if ts < now - max_age_s:
        raise BadRequest(422, "stale_timestamp", "ts is too old")
    metrics = data.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        raise BadRequest(422, "invalid_field", "metrics must be a non-empty object")
    for name, value in metrics.items():
        if name not in METRICS:
            raise BadRequest(422, "unknown_metric", f"unknown metric {name!r}")
        lo, hi, _, _ = METRICS[name]
        if not lo <= _num(value, f"metrics.{name}") <= hi:
            raise BadRequest(422, "out_of_range", f"metrics.{name} outside physical limits [{lo}, {hi}]")
    battery = data.get("battery_pct")
    if battery is not None and not 0 <= _num(battery, "battery_pct") <= 100:
        raise BadRequest(422, "out_of_range", "battery_pct must be within [0, 100]")
    cal = data.get("calibrated_at")
    if cal is not None and (isinstance(cal, bool) or not isinstance(cal, int) or cal > now + max_skew_s or cal < 0):
        raise BadRequest(422, "invalid_field", "calibrated_at must be unix seconds, not in the future")
    canonical = rfc8785.dumps(data).decode()
    return Reading(dev, ts, dict(metrics), battery, cal, canonical)


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
