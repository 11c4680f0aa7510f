"""indexer.sync._check_events: the node's answer for a range, refused as a node fault when it is not the range's."""

from __future__ import annotations

import itertools

import pytest

from chains.base import ChainEvent, UndecodableLog
from chains.rpc import RpcError
from indexer.sync import _check_events
from tests import seeds

H = {1: "0x" + "b1" * 32, 2: "0x" + "b2" * 32, 3: "0x" + "b3" * 32}


def _ev(block: int, index: int, name: str = "TransferSingle", tx: int | None = None) -> ChainEvent:
    tx = block if tx is None else tx
    return ChainEvent("c", "CarbonCredit", name, {}, block, H.get(block, "0x" + "cc" * 32), 0, "0x" + f"{tx:02x}" * 32,
                      index, "0xaa")


EVENTS = [_ev(1, 0), _ev(1, 1), _ev(2, 0), _ev(2, 5), _ev(3, 2)]


def test_distinct_events_pass_in_any_order():
    for perm in itertools.permutations(EVENTS):
        _check_events(list(perm), 1, 3, H, "range")


@pytest.mark.parametrize("dup", range(len(EVENTS)))
@pytest.mark.parametrize("at", range(len(EVENTS) + 1))
def test_a_log_answered_twice_anywhere_is_refused(dup, at):
    """Adjacent or not, before or after its first copy, in order or not: the second copy is a node fault."""
    events = list(EVENTS)
    events.insert(at, EVENTS[dup])
    with pytest.raises(RpcError, match="twice"):
        _check_events(events, 1, 3, H, "range")
    with pytest.raises(RpcError, match="twice"):
        _check_events(events[::-1], 1, 3, H, "range")


def test_two_protocol_events_at_one_position_pass_and_undecodable_logs_are_skipped():
    events = [*EVENTS[:3], _ev(2, 0, "Minted"), UndecodableLog("c", "CarbonCredit", 2, H[2], "0x" + "02" * 32, 0, "bad"),
              *EVENTS[3:]]
    _check_events(events, 1, 3, H, "range")
    with pytest.raises(RpcError, match="twice"):
        _check_events([*events, _ev(2, 0, "Minted")], 1, 3, H, "range")


@pytest.mark.parametrize("bad", [_ev(3, 9), ChainEvent("c", "CarbonCredit", "TransferSingle", {}, 2, "0x" + "ee" * 32, 0,
                                                       "0x" + "02" * 32, 9, "0xaa")], ids=["outside", "other_hash"])
def test_outside_the_range_or_on_another_branch_is_refused(bad):
    with pytest.raises(RpcError):
        _check_events([*EVENTS[:4], bad], 1, 2, H, "range")


def test_a_transaction_moved_to_another_block_with_the_same_log_is_refused():
    """A node that changes branch between the calls of one range may answer a transaction in block 1 and again in
    block 2 (its hash is not checked there: only the range's ends are), in chain order: the same row key twice."""
    with pytest.raises(RpcError, match="twice"):
        _check_events([_ev(1, 0, tx=7), _ev(2, 0, tx=7)], 1, 3, H, "range")
    with pytest.raises(RpcError, match="twice"):
        _check_events([_ev(1, 0, tx=7), _ev(1, 1, tx=8), _ev(2, 0, tx=7)], 1, 3, H, "range")
    _check_events([_ev(1, 0, tx=7), _ev(2, 1, tx=7)], 1, 3, H, "range")  # other log indexes: other keys, as ever


def test_two_logs_at_one_position_in_different_transactions_are_refused():
    """A node that numbers logs per transaction (seen on non-conforming EVM gateways) answers log index 0 for the
    first log of each transaction of a block: the ledger is keyed by position, so that would be a duplicate key at
    COPY and a range that fails on every retry. Refused as the node's fault, by name, in any order."""
    events = [_ev(1, 0, tx=7), _ev(1, 1, tx=7), _ev(1, 0, tx=8), _ev(2, 0)]
    for perm in itertools.permutations(events):
        with pytest.raises(RpcError, match="two logs at log index 0 of block 1"):
            _check_events(list(perm), 1, 3, H, "range")
    _check_events([_ev(1, 0, tx=7), _ev(1, 0, "Minted", tx=7)], 1, 3, H, "range")  # two protocol events at one position


def _reference(events, a, b, hashes):
    """The rule spelled out: every event inside [a, b] with its block's hash where known, no (tx, log index, key)
    twice and no (block, log index, key) twice."""
    by_tx, by_position = set(), set()
    for ev in events:
        if not isinstance(ev, ChainEvent):
            continue
        if not a <= ev.block_number <= b or hashes.get(ev.block_number, ev.block_hash) != ev.block_hash:
            return "refused"
        key, at = (ev.tx_hash, ev.log_index, ev.key), (ev.block_number, ev.log_index, ev.key)
        if key in by_tx or at in by_position:
            return "refused"
        by_tx.add(key)
        by_position.add(at)
    return "ok"


@pytest.mark.parametrize("seed", range(20))
def test_agrees_with_the_rule_on_random_answers(seed):
    """Random answers, mostly in chain order (as nodes send them), with transactions reused across blocks, repeated
    events, two protocol events at one position, undecodable logs, blocks outside the range and wrong hashes."""
    rng = seeds.rng(seed)
    for _ in range(300):
        events = []
        for _ in range(rng.randrange(1, 12)):
            block = rng.choice([1, 1, 2, 2, 3, 3, 3, 0, 4][: 7 if rng.random() < 0.9 else 9])
            ev = _ev(block, rng.randrange(4), rng.choice(["TransferSingle", "TransferSingle", "Minted"]),
                     tx=rng.choice([block, block, 7, 8]))
            if rng.random() < 0.03:
                ev = ChainEvent(*[getattr(ev, f) for f in ev.__struct_fields__[:5]], "0x" + "ee" * 32,
                                *[getattr(ev, f) for f in ev.__struct_fields__[6:]])
            events.append(ev)
            if rng.random() < 0.1:
                events.append(UndecodableLog("c", "CarbonCredit", block, H.get(block, ""), ev.tx_hash, 9, "bad"))
        if rng.random() < 0.7:
            events.sort(key=lambda e: (e.block_number, e.log_index))
        ends = {1: H[1], 3: H[3]}  # as _fetch checks them: the range's first and last block
        try:
            _check_events(events, 1, 3, ends, "range")
            got = "ok"
        except RpcError:
            got = "refused"
        assert got == _reference(events, 1, 3, ends), events
