"""Pause the cyclic garbage collector while building large acyclic trees.

Parsing, planning and writing a flow of thousands of nodes allocates hundreds of thousands of objects and
no cycles; CPython 3.11's collector keeps re-scanning them as they pile up, which makes the work grow
faster than the flow (measured: bench/plan_bench.py). Reference counting still frees everything.
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


def gc_paused(fn: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if not gc.isenabled():  # nested, or paused by the caller
            return fn(*args, **kwargs)
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            gc.enable()

    return wrapper
