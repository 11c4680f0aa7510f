"""Fixtures shared by the oracle integration tests (tests/integration/test_oracle_*.py).

Imported by name into each module (not a conftest: the key-in-logs check is for the oracle tests only).
"""

from __future__ import annotations

import logging

import pytest

from oracle.testing import ORACLE_KEY


@pytest.fixture()
def anyio_backend():
    return "asyncio"


@pytest.fixture(autouse=True)
def _no_key_in_logs(caplog):
    """Whatever these tests log, the signing key's hex never appears."""
    caplog.set_level(logging.DEBUG, logger="carbonledger")
    yield
    text = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records).lower()
    assert ORACLE_KEY[2:].lower() not in text


@pytest.fixture(scope="module")
def localstripe():
    """localstripe (Stripe's API for tests) for this module: the oracle re-fetches every PaymentIntent from it."""
    from oracle.testing import LocalStripe

    with LocalStripe() as ls:
        yield ls


@pytest.fixture()
def daraja():
    """A local Daraja speaking the real wire format (Safaricom's sandbox is not reachable here)."""
    from oracle.testing import FakeDaraja

    with FakeDaraja() as d:
        yield d
