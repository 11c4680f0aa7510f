"""gqlapi.answers.Probe: concurrent lookups share reads of the database state, and none is answered from a read that
started before it arrived (so sharing never makes an answer older than a read of its own would have been)."""

from __future__ import annotations

import asyncio

import pytest

from gqlapi.answers import Probe


class Reads:
    """read_state() whose every call is numbered and blocks until the test opens its gate."""

    def __init__(self) -> None:
        self.started = 0
        self.gates: dict[int, asyncio.Event] = {}
        self.fail: set[int] = set()

    async def __call__(self) -> int:
        self.started += 1
        n = self.started
        await self.gate(n).wait()
        if n in self.fail:
            raise ConnectionError(f"read {n} failed")
        return n

    def gate(self, n: int) -> asyncio.Event:
        return self.gates.setdefault(n, asyncio.Event())


async def until(cond, what: str) -> None:
    for _ in range(10_000):  # event-loop turns, not time: nothing here sleeps
        if cond():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never: {what}")


async def running(waiting: int, fail: int | None = None) -> tuple[Reads, Probe, asyncio.Task, list[asyncio.Task]]:
    """A probe with read 1 running (its first caller's task) and `waiting` callers that came after it started, so
    wait for read 2 (`fail`: the number of a read that fails)."""
    reads = Reads()
    if fail is not None:
        reads.fail.add(fail)
    probe = Probe(reads)
    first = asyncio.create_task(probe.read())
    await until(lambda: reads.started == 1, "read 1 started")
    later = [asyncio.create_task(probe.read()) for _ in range(waiting)]
    await until(lambda: probe._next is not None, "read 2 awaited")
    return reads, probe, first, later


def run(scenario) -> None:
    """Run a scenario; a hang (a waiter nobody serves) fails after a minute instead of stalling the suite."""
    asyncio.run(asyncio.wait_for(scenario, 60))


def test_a_lookup_waits_for_a_read_that_starts_after_it_arrived():
    async def scenario() -> None:
        reads = Reads()
        probe = Probe(reads)
        a = asyncio.create_task(probe.read())
        await until(lambda: reads.started == 1, "read 1 started")
        # b and c arrive while read 1 runs: read 1 may predate a commit they must see, so they wait for read 2.
        b, c = asyncio.create_task(probe.read()), asyncio.create_task(probe.read())
        for _ in range(50):
            await asyncio.sleep(0)
        assert reads.started == 1  # one read at a time
        reads.gate(1).set()
        assert await a == 1
        await until(lambda: reads.started == 2, "read 2 started once read 1 ended")
        d = asyncio.create_task(probe.read())  # arrives after read 2 started: waits for read 3
        reads.gate(2).set()
        assert (await b, await c) == (2, 2)  # one read served both
        await until(lambda: reads.started == 3, "read 3 started")
        reads.gate(3).set()
        assert await d == 3
        assert probe.reads == 3

    run(scenario())


def test_a_failed_read_fails_each_of_its_waiters_and_the_next_read_works():
    async def scenario() -> None:
        reads, probe, first, later = await running(2, fail=2)
        reads.gate(1).set()
        reads.gate(2).set()
        assert await first == 1
        for t in later:
            with pytest.raises(ConnectionError, match="read 2 failed"):
                await t
        reads.gate(3).set()
        assert await probe.read() == 3

    run(scenario())


def test_a_waiter_that_leaves_does_not_cancel_the_read_of_the_others():
    async def scenario() -> None:
        reads, probe, first, (gone, stays) = await running(2)
        gone.cancel()  # its client disconnected
        with pytest.raises(asyncio.CancelledError):
            await gone
        reads.gate(1).set()
        assert await first == 1
        await until(lambda: reads.started == 2, "read 2 started")
        reads.gate(2).set()
        assert await stays == 2

    run(scenario())


def test_a_cancelled_read_fails_its_waiters_and_the_next_ones_and_starts_no_other():
    async def scenario() -> None:
        reads, probe, first, (later,) = await running(1)
        probe._task.cancel()  # the server shuts down mid-read
        for t in (first, later):
            with pytest.raises(RuntimeError, match="interrupted"):
                await t
        for _ in range(50):
            await asyncio.sleep(0)
        assert reads.started == 1 and probe._task is None

    run(scenario())


def test_a_stuck_state_read_is_abandoned_after_its_bound():
    """The endpoint bounds each shared read (one runs at a time, so a stuck one would hold every lookup): past
    `probe_timeout_s` its waiters get None (they run uncached) and the session is closed."""
    from types import SimpleNamespace

    from gqlapi.endpoint import GraphQLEndpoint

    closed = []

    class Stuck:
        async def fetch(self, *a, **kw):
            await asyncio.Event().wait()  # a server that stopped answering

        async def close(self):
            closed.append(True)

    ep = GraphQLEndpoint.__new__(GraphQLEndpoint)
    ep.make_context = lambda single: SimpleNamespace(db=Stuck())
    ep.probe_timeout_s = 0.05
    ep.probe = Probe(ep._probe_once)

    async def scenario() -> None:
        assert await asyncio.gather(ep.probe.read(), ep.probe.read()) == [None, None]
        assert closed == [True, True]  # the first read's session, then the second's (the second caller waited for it)

    run(scenario())
