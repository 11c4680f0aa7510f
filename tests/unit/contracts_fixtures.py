"""Shared helpers for the contract unit tests (tests/unit/test_contracts_*.py).

Each test module builds its own ``env`` fixture (its own eth-tester chain and deployment); this module holds
what they share: revert decoding, transacting, event extraction and the per-test chain snapshot.
"""

from contextlib import contextmanager

import pytest
from web3.logs import DISCARD

from chains.evm.artifacts import decode_error, revert_data


def _norm(v):
    return v.lower() if isinstance(v, str) and v.startswith("0x") else v


def reverts_for(contract):
    """A ``reverts(error, **expected)`` context manager decoding custom errors of ``contract`` first."""

    @contextmanager
    def reverts(error, **expected):
        with pytest.raises(Exception) as info:
            yield
        decoded = decode_error(revert_data(info.value) or b"", contract=contract)
        assert decoded is not None, f"expected {error}, got undecodable {info.value!r}"
        name, args = decoded
        assert name == error, f"expected {error}, got {name}{args}"
        for key, value in expected.items():
            assert _norm(args[key]) == _norm(value), f"{error}.{key}: {args[key]!r} != {value!r}"

    return reverts


def send(fn, sender, value=0):
    receipt = fn.transact({"from": sender, "value": value})
    receipt = fn.w3.eth.get_transaction_receipt(receipt)
    assert receipt["status"] == 1
    return receipt


def events(contract, receipt, name):
    return [dict(e["args"]) for e in getattr(contract.events, name)().process_receipt(receipt, errors=DISCARD)]


@pytest.fixture(autouse=True)
def _snapshot(env):
    """Every test starts from the module's freshly deployed chain state (``env`` is the module's fixture)."""
    snap = env.w3.testing.snapshot()
    yield
    env.w3.testing.revert(snap)
