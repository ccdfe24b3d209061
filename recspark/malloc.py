"""Processes that run recspark's tasks keep the memory they free for their next allocation.

A recspark task allocates and frees arrays of tens to hundreds of MB (a block's ratings,
its tiles, a half-step's Gram matrices, a scored user block), and the next task in the
same Python worker allocates them again. glibc's malloc serves every allocation above
its mmap threshold (at most 32 MB) by a fresh ``mmap`` and gives it back to the kernel on
``free``, so the next task faults every page in again. On the machine the README's
figures come from, that costs ~3 ms per MB once the pages have been back with the kernel
for more than about two seconds (the virtual machine reclaims them): 200 MB of
``np.ones`` took 0.02 s right after the same array was freed, 0.55-0.68 s after a pause of
3-5 s, 0.007 s whatever the pause with these settings; ALS fits at the ml-32m shape took
21.1-23.2 s with the workers so set against 23.1-24.3 s without (``scripts/bench_als.py``,
alternated, session 30).

:func:`keep_freed_memory` sets, through ``mallopt(3)``, ``M_MMAP_MAX = 0`` (every
allocation comes from the heap, which ``free`` does not unmap) and ``M_TRIM_THRESHOLD =
-1`` (the heap's free top is never given back). A process so set stays at its peak memory
until it exits. :func:`keep_freed_memory_in_tasks` applies them only inside a Spark task's
Python worker (``pyspark.TaskContext.get()`` is set), never in a driver or notebook; the
package calls it when it is imported, so every worker that runs recspark code is set once,
on its first recspark task. Other C libraries (musl, macOS): nothing changes.
"""

from __future__ import annotations

import ctypes
import sys

#: mallopt(3) parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4

_kept = False


def keep_freed_memory() -> bool:
    """Tell this process's glibc malloc to keep freed memory (module docstring); True when
    set (now or before), False without glibc's ``mallopt`` or if it refused. Never raises."""
    global _kept
    if _kept:
        return True
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the process runs on
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    _kept = mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, -1) == 1
    return _kept


def keep_freed_memory_in_tasks() -> bool:
    """:func:`keep_freed_memory` if this process is running a Spark task, else nothing
    (False). Cheap: it imports nothing; outside PySpark it returns at once."""
    pyspark = sys.modules.get("pyspark")
    if pyspark is None or pyspark.TaskContext.get() is None:
        return False
    return keep_freed_memory()
