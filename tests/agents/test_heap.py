"""settled_heap: the objects alive on entering are exempt from the collector's passes; nothing else changes."""

import gc
import weakref

from selfplay.agents.heap import settled_heap


class _Node:
    pass


def test_a_settled_heap_exempts_what_is_alive_and_still_collects_cycles_made_inside():
    before = gc.get_freeze_count()
    with settled_heap():
        assert gc.get_freeze_count() > before  # the loaded stack is frozen
        a, b = _Node(), _Node()
        a.other, b.other = b, a  # a cycle made inside: only the collector can free it
        gone = weakref.ref(a)
        del a, b
        gc.collect()
        assert gone() is None
    assert gc.get_freeze_count() == 0  # collectable again on leaving
