"""Garbage-collector settings for long plays: no torch here, so scripted play imports nothing heavy."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def settled_heap() -> Iterator[None]:
    """Within it, the objects alive on entering (modules, the model, the tokenizer: ~400k of them once transformers
    is loaded) are exempt from the cyclic garbage collector's passes (``gc.freeze``): a full pass over them took ~0.2 s
    here, and self-play allocates enough to set one off every few plays. Reference counting still frees everything
    as usual; on leaving, the exempt objects are collectable again."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
