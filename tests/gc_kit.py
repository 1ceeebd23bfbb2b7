"""What only Python's cyclic garbage collector would free, for the tests
that show a path leaves no reference cycle behind."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def cyclic_garbage() -> Iterator[list[object]]:
    """Collects first, then keeps what every collection meanwhile finds
    (``gc.DEBUG_SAVEALL``) in the list given: call ``gc.collect()`` at the
    end of the block and look in it. Restores the collector afterwards."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield gc.garbage
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
