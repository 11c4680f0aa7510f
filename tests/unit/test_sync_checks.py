"""indexer.sync._check_events: the node's answer for a range, refused as a node fault when it is not the range's."""

from __future__ import annotations

import itertools

import pytest

from chains.base import ChainEvent, UndecodableLog
from chains.rpc import RpcError
from indexer.sync import _check_events

H = {1: "0x" + "b1" * 32, 2: "0x" + "b2" * 32, 3: "0x" + "b3" * 32}


def _ev(block: int, index: int, name: str = "TransferSingle") -> ChainEvent:
    return ChainEvent("c", "CarbonCredit", name, {}, block, H[block], 0, "0x" + f"{block:02x}" * 32, index, "0xaa")


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
