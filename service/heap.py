"""Keeps Python's cyclic garbage collector off the long-lived heap while a sync runs."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_holders = 0


@contextmanager
def long_lived_heap_frozen() -> Iterator[None]:
    """Moves the objects alive now (imported modules, SQLAlchemy and pydantic metadata: ~130,000 objects) out of
    the collector's reach until the last concurrent holder leaves, then hands them back to it.

    A full sync allocates millions of short-lived objects, so the collector runs its oldest generation several
    times, and each of those walks the whole heap: a quarter of a 10,000-card Trello full sync went there. What
    the run itself allocates is still collected as usual, and frozen objects that became garbage are collected
    after the run (gc.unfreeze puts them back in the oldest generation), so nothing is kept for good."""
    global _holders
    with _lock:
        if _holders == 0:
            gc.freeze()
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0:
                gc.unfreeze()
