"""Shared set-up of the Aptos tests: the recorded goldens, accounts, a stand-in fullnode and its writers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import FIXTURES

GOLDENS = FIXTURES / "aptos" / "rest_api_goldens"
PREFIX = "aptos_api__tests__"


def golden(name: str) -> Any:
    """A recorded fullnode answer (the test skips where ../shared/fixtures is absent, as fixtures_dir does)."""
    if not GOLDENS.is_dir():
        pytest.skip(f"Aptos goldens not found at {GOLDENS} (set CARBONLEDGER_FIXTURES)")
    return json.loads((GOLDENS / f"{PREFIX}{name}.json").read_text())


def shape(v: Any) -> Any:
    """The structure of a JSON value: keys of objects, the shape of a list's first item, JSON types of scalars."""
    if isinstance(v, dict):
        return {k: shape(x) for k, x in v.items()}
    if isinstance(v, list):
        return [shape(v[0])] if v else []
    return type(v).__name__


def same_shape(got: Any, want: Any, where: str = "$", loose: tuple[str, ...] = ("data", "changes")) -> list[str]:
    """Differences between two JSON values' structures; `loose` keys (payload-specific contents) are not entered,
    and an empty list on either side matches any list."""
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return [f"{where}: object expected, got {type(got).__name__}"]
        out = [f"{where}: keys differ: missing {sorted(want.keys() - got.keys())}, extra {sorted(got.keys() - want.keys())}"] \
            if got.keys() != want.keys() else []
        for k in want.keys() & got.keys():
            if k not in loose:
                out += same_shape(got[k], want[k], f"{where}.{k}", loose)
        return out
    if isinstance(want, list):
        if not isinstance(got, list):
            return [f"{where}: list expected"]
        return same_shape(got[0], want[0], f"{where}[0]", loose) if got and want else []
    if want is None or got is None:
        return []  # nullable fields (state_checkpoint_hash, vm_error_code, replay_protection_nonce)
    return [] if type(got) is type(want) else [f"{where}: {type(want).__name__} expected, got {type(got).__name__}"]


@pytest.fixture()
def aptos() -> Any:
    """A stand-in node (auto-commit) with the package's admin, an oracle and two users (fixed keys), and a writer for
    each."""
    from aptos_sdk.account import Account

    from chains.aptos.standin import StandInNode
    from chains.aptos.writer import AptosWriter

    class World:
        pass

    w = World()
    # Fixed keys: a run is reproducible (test_addresses_with_leading_zeros_everywhere covers the other shapes).
    w.admin, w.oracle, w.alice, w.bob = (Account.load_key("ed25519-priv-0x" + f"{k:02x}" * 32)
                                         for k in (0x11, 0x22, 0x33, 0x44))
    w.package = str(w.admin.address())
    w.node = StandInNode(w.package)
    w.url = w.node.start()
    w.node.grant("oracle", str(w.oracle.address()))
    w.writer = {n: AptosWriter("aptos", w.url, getattr(w, n), w.package) for n in ("admin", "oracle", "alice", "bob")}
    yield w
    w.node.stop()
    for wr in w.writer.values():
        wr.client.close()


def send(writer: Any, contract: str, function: str, *args: Any) -> Any:
    """Sign (gas from a simulation), submit and return the committed status."""
    from chains.base import TxRequest

    req = TxRequest("aptos", contract, function, tuple(args))
    n = writer.next_nonce()
    h, raw = writer.sign(req, n, writer.fees(req, n))
    assert writer.submit(raw) == h
    return writer.status(h)
