"""A long-lived process (a search worker, the coverage bench) that binds many spaces keeps
a bounded number of them, and their traced graphs, alive."""

from __future__ import annotations

import gc

from archsearch.build import RECENT_BINDS, BoundSpace, bind


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    import os

    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _live_bound_spaces() -> int:
    gc.collect()
    # type(o), not isinstance: no object's own __class__ is read (torch's deprecated
    # reduce_op proxy warns when it is)
    return sum(issubclass(type(o), BoundSpace) for o in gc.get_objects())


def test_binding_and_dropping_20_spaces_keeps_memory_bounded():
    before = _live_bound_spaces()
    sizes = range(32, 32 + 4 * 20, 4)  # 20 distinct spaces: resnet56 at 20 input sizes
    for i, size in enumerate(sizes):
        bound = bind("resnet56", "cifar10", input_size=size)
        assert bound.base_cost.macs > 0  # traced: the graph and the base model exist
        if i == 4:
            after_five = _rss_mb()
        del bound
    assert _live_bound_spaces() - before <= RECENT_BINDS
    grown = _rss_mb() - after_five
    assert grown < 150, f"memory grew {grown:.0f} MB over 15 more binds"
    again = bind("resnet56", "cifar10", input_size=sizes[-1])  # recent ones are still cached
    assert again is bind("resnet56", "cifar10", input_size=sizes[-1])
