"""The pure parts of live updates: head-poll pacing, snapshot visibility, the hub's fan-out and its limits."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from gqlapi.live import SLOW_CONSUMER, Hub, LimitReached, LiveClosed, Snapshot
from indexer.pacing import Pacer


def test_pacer_polls_fast_after_a_block_backs_off_and_wakes_when_the_next_is_due():
    p = Pacer(0.05, 1.0)
    assert p.next_wait(0.0) == 1.0  # nothing seen yet: the configured interval
    p.new_block(0.0)
    assert [p.next_wait(0.0) for _ in range(6)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0]
    p = Pacer(0.05, 1.0)
    for t in (0.0, 12.0, 24.0):  # a 12 s chain
        p.new_block(t)
    for _ in range(5):
        p.next_wait(24.0)
    assert p.next_wait(30.0) == 1.0  # between blocks: the slow interval
    assert p.next_wait(35.3) == pytest.approx(0.7)  # wake just when block 36 is due
    assert p.next_wait(36.0) == pytest.approx(0.3) and p.next_wait(36.3) == pytest.approx(0.3)  # due: every bt / 40
    for _ in range(5):
        last = p.next_wait(43.0)  # 7 s late: back to backing off
    assert last == 1.0
    fast = Pacer(0.02, 1.0)
    for t in (0.0, 0.2, 0.4):  # one block per transaction at 5/s
        fast.new_block(t)
    assert fast.next_wait(0.4) == 0.02 and fast.next_wait(0.42) == 0.04
    assert fast.next_wait(0.58) == pytest.approx(0.02)  # the next is due at 0.6
    assert fast.next_wait(0.61) == 0.02  # due: every `fast`


def test_snapshot_sees_exactly_the_transactions_committed_before_it():
    s = Snapshot("100:105:101,103")
    assert [x for x in range(98, 108) if s.saw(x)] == [98, 99, 100, 102, 104]


def _notice(chain="dev", n=1, xid=1):
    return orjson.dumps({"t": "block", "chain": chain, "from": n, "to": n, "hash": "0x", "kinds": [],
                         "xid": str(xid)}).decode()


def test_hub_fans_out_drops_a_slow_consumer_alone_and_enforces_limits():
    async def main():
        hub = Hub("postgresql://unused/x", queue_size=3, max_subscribers=5, per_client=3)
        closed = []
        fast = [hub.subscribe("a"), hub.subscribe("b", frozenset({"dev"}))]
        other_chain = hub.subscribe("b", frozenset({"other"}))
        intents = hub.subscribe("d", types=frozenset({"intent"}))
        slow = hub.subscribe("c", on_close=closed.append)
        got: list[list[int]] = [[], []]
        for n in range(1, 11):
            hub.dispatch(_notice(n=n, xid=n))
            for i, sub in enumerate(fast):
                got[i].append((await sub.get())["to"])
        assert got == [list(range(1, 11))] * 2
        assert other_chain.queue.empty() and intents.queue.empty()
        intents.detach()
        assert slow.closed is not None and slow.closed.code == SLOW_CONSUMER and closed == [slow.closed]
        with pytest.raises(LiveClosed):
            await slow.get()
        assert slow not in hub.subscribers and hub.dropped == 1
        hub.dispatch("not json")  # ignored, logged
        hub.subscribe("b")
        with pytest.raises(LimitReached, match="per client"):
            hub.subscribe("b")
        hub.subscribe("d")
        with pytest.raises(LimitReached, match="limit"):
            hub.subscribe("e")
        fast[0].detach()
        assert fast[0] not in hub.subscribers and hub.by_client.get("a") is None

    asyncio.run(main())
