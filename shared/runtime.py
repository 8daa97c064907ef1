"""Process-wide settings for long-running services."""

from __future__ import annotations

import gc
import time

# Every record a service handles allocates a few dicts, so CPython's default first-generation
# threshold (700 allocations) runs the cyclic collector every few records, each time walking the
# young objects again. Our records form no reference cycles worth collecting that often.
YOUNG_GENERATION_THRESHOLD = 50_000


def settle_heap() -> None:
    """Call once start-up is done: moves the objects made so far (modules, schemas, clients) out of
    the collector's sight, and makes collections rarer."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, older, oldest)


def now_ms() -> int:
    """Wall-clock time in epoch milliseconds, the unit of every stored time."""
    return int(time.time() * 1000)
