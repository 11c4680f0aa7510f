"""core.heap: what start-up built is frozen, collections are spaced out, and cycles are still collected."""

import gc
import weakref

from core import heap


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector frees it


def test_settle_freezes_what_exists_and_raises_the_young_threshold():
    threshold = gc.get_threshold()  # as it is: earlier tests may have started a daemon in this process
    try:
        gc.set_threshold(700, *threshold[1:])  # CPython's default
        built = [[i] for i in range(5000)]  # start-up's long-lived containers
        heap.settle()
        assert gc.get_freeze_count() >= len(built)
        assert gc.get_threshold() == (heap.YOUNG, *threshold[1:])
        assert gc.isenabled()
        cycle = _Node()
        gone = weakref.ref(cycle)
        del cycle
        assert gone() is not None  # reference counting alone cannot free a cycle
        junk = [[] for _ in range(heap.YOUNG + 1)]  # enough container allocations for a young collection
        del junk
        assert gone() is None  # the collector still runs on its own, just less often
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def test_settle_without_young_only_freezes():
    threshold = gc.get_threshold()
    try:
        gc.set_threshold(700, *threshold[1:])
        heap.settle(young=None)
        assert gc.get_threshold() == (700, *threshold[1:]) and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
