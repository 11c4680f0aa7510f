"""The sync loop against a scripted node (real Postgres): a lagging or stale node is not a reorg, a block the
node does not have yet is waited for, and a failed prefetch is retried rather than trusted."""

from __future__ import annotations

import psycopg
import pytest

from chains.base import Block, ChainEvent, ChainReader
from chains.evm.rpc import RpcTransportError
from indexer.sync import ChainSync
from store.engine import libpq_url

ALICE = "0x" + "a1" * 20
ZERO = "0x" + "0" * 40


class ScriptedNode(ChainReader):
    """Blocks 0..tip, one mint of 1 credit per block; `visible` caps what head()/block() reveal."""

    chain = "fake"

    def __init__(self, tip: int) -> None:
        self.blocks = [Block("fake", 0, _h("a", 0), _h("-", 0), 1000)]
        self.grow(tip, "a")
        self.visible: int | None = None
        self.fail_ranges: set[tuple[int, int]] = set()
        self.calls: list[tuple[int, int]] = []

    def grow(self, tip: int, branch: str) -> None:
        while len(self.blocks) <= tip:
            n = len(self.blocks)
            self.blocks.append(Block("fake", n, _h(branch, n), self.blocks[-1].hash, 1000 + n))

    def chain_id(self) -> int:
        return 1

    def _top(self) -> int:
        return len(self.blocks) - 1 if self.visible is None else self.visible

    def head(self) -> Block:
        return self.blocks[self._top()]

    def finalized(self, head: Block, depth: int) -> int:
        return head.number - depth

    def block(self, number: int) -> Block | None:
        return self.blocks[number] if number <= self._top() else None

    def _ev(self, b: Block) -> ChainEvent:
        return ChainEvent("fake", "CarbonCredit", "TransferSingle",
                          {"operator": ALICE, "from": ZERO, "to": ALICE, "id": 1, "value": 1},
                          b.number, b.hash, b.timestamp, "0x" + b.hash[3:], 0, "0x" + "cc" * 20)

    def events(self, a: int, b: int):
        self.calls.append((a, b))
        if (a, b) in self.fail_ranges:
            self.fail_ranges.discard((a, b))
            raise RpcTransportError("injected")
        return [self._ev(self.blocks[n]) for n in range(a, b + 1) if n >= 1]

    def events_at(self, block: Block):
        return [self._ev(block)] if block.number >= 1 else []


def _h(branch: str, n: int) -> str:
    return "0x" + branch + f"{n:063x}"


def _tradable(db_url: str) -> int:
    with psycopg.connect(libpq_url(db_url)) as c:
        row = c.execute("SELECT tradable FROM holding WHERE chain = 'fake' AND valid_to IS NULL").fetchone()
        return int(row[0]) if row else 0


def _sync(node: ScriptedNode, db_url: str, **kw) -> ChainSync:
    s = ChainSync("fake", node, db_url, addresses={}, start_block=0, finality_depth=3, **kw)
    s.load()
    return s


def _run(s: ChainSync, limit: int = 500) -> None:
    for _ in range(limit):
        try:
            if not s.step():
                return
        except RpcTransportError:
            continue
    raise AssertionError("did not settle")


def test_lagging_and_stale_nodes_are_not_reorgs(db_url):
    node = ScriptedNode(40)
    s = _sync(node, db_url)
    _run(s)
    assert s.cursor[0] == 40 and _tradable(db_url) == 40
    node.visible = 39  # a node behind us: same hash at a height we hold, lower head
    _run(s)
    assert s.stats.reorgs == 0 and s.cursor[0] == 40
    node.visible = None
    node.grow(45, "a")
    node.visible = 42  # head says 42 but the block after it is not there yet
    _run(s)
    assert s.cursor[0] == 42
    node.visible = None
    _run(s)
    assert s.cursor[0] == 45 and s.stats.reorgs == 0 and _tradable(db_url) == 45
    s.close()


def test_a_shorter_branch_with_new_hashes_is_a_reorg(db_url):
    node = ScriptedNode(40)
    s = _sync(node, db_url)
    _run(s)
    del node.blocks[38:]
    node.grow(39, "b")  # 38', 39' replace 38..40: head below our cursor, different hash at its height
    _run(s)
    assert s.stats.reorgs == 1 and s.cursor == (39, node.blocks[39].hash) and _tradable(db_url) == 39
    s.close()


def test_failed_prefetch_is_refetched(db_url):
    node = ScriptedNode(300)
    s = _sync(node, db_url, target_events=8, max_span=4)
    s.step()  # first range; prefetches the next one
    assert s._next is not None
    a, b = s._next[:2]
    s._next[2].result()  # let it finish, then make its result a failure
    node.fail_ranges.add((a, b))
    s._next = (a, b, s._pool.submit(node.events, a, b))
    with pytest.raises(RpcTransportError):
        s.step()
    _run(s)
    assert s.cursor[0] == 300 and _tradable(db_url) == 300
    s.close()
