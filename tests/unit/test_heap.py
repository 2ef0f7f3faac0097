"""The collector pause around syncs: the long-lived heap is frozen while any run holds it, and handed back."""

from __future__ import annotations

import gc
import weakref

import pytest

from service.heap import SYNC_THRESHOLDS, long_lived_heap_frozen


def test_heap_is_frozen_while_held_and_handed_back_after_the_last_holder() -> None:
    # Frozen objects can still die by reference counting (other threads run), so the count only says whether
    # the heap is frozen, not how much of it.
    assert gc.get_freeze_count() == 0
    with long_lived_heap_frozen():
        assert gc.get_freeze_count() > 1000
        with long_lived_heap_frozen():  # a second run at the same time
            assert gc.get_freeze_count() > 1000
        assert gc.get_freeze_count() > 1000  # the first run still holds it
    assert gc.get_freeze_count() == 0


def test_collection_thresholds_are_raised_while_held_and_put_back_after() -> None:
    before = gc.get_threshold()
    assert before != SYNC_THRESHOLDS
    with long_lived_heap_frozen():
        assert gc.get_threshold() == SYNC_THRESHOLDS
        with long_lived_heap_frozen():
            assert gc.get_threshold() == SYNC_THRESHOLDS
        assert gc.get_threshold() == SYNC_THRESHOLDS  # the first run still holds it
    assert gc.get_threshold() == before


def test_heap_is_handed_back_when_the_run_fails() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), long_lived_heap_frozen():
        raise RuntimeError("the sync failed")
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() != SYNC_THRESHOLDS
    assert gc.get_threshold() == before


def test_garbage_cycles_of_the_frozen_heap_are_collected_after_the_run() -> None:
    class Node:
        other: Node | None = None

    first, second = Node(), Node()
    first.other, second.other = second, first  # a cycle only the collector can free
    alive = weakref.ref(first)
    with long_lived_heap_frozen():
        del first, second
        gc.collect()
        assert alive() is not None  # frozen: out of the collector's reach during the run
    gc.collect()
    assert alive() is None
