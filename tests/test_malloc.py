"""recspark.malloc: a Python worker running recspark tasks keeps the memory it frees."""

from __future__ import annotations

import subprocess
import sys

import pytest

from recspark import malloc

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")

#: Bytes freed in the probe: far above glibc's largest mmap threshold (32 MB).
FREED = 128 << 20

PROBE = """
import os, numpy as np
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
a = np.ones({n} // 8)
peak = rss()
del a
given = peak - rss()
"""


def _given_back(prelude: str = "") -> int:
    """Bytes of RSS a fresh Python gives back when it frees a FREED-byte array."""
    code = prelude + PROBE.format(n=FREED) + "print(given)\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def _probe_in_task(_: int) -> tuple[bool, int]:
    """In a Spark task: whether the worker keeps freed memory, and the RSS a freed array
    gives back."""
    import recspark.malloc as m

    scope: dict = {}
    exec(PROBE.format(n=FREED), scope)
    return m.keep_freed_memory_in_tasks(), scope["given"]


def test_glibc_gives_freed_arrays_back_unless_told_to_keep_them() -> None:
    # The control: without the setting the freed array leaves the process at once.
    assert _given_back() > FREED // 2
    assert _given_back("import recspark.malloc as m; assert m.keep_freed_memory()\n") < 8 << 20


def test_a_spark_worker_keeps_what_it_frees(spark) -> None:
    kept, given = spark.sparkContext.parallelize([0], 1).map(_probe_in_task).collect()[0]
    assert kept
    assert given < 8 << 20


def test_outside_a_task_nothing_is_set() -> None:
    assert malloc.keep_freed_memory_in_tasks() is False
