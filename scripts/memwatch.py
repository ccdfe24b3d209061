"""Run a command and report its wall time and the peak memory of its whole process tree.

    python scripts/memwatch.py -- python jobs/ingest.py --set data.dir=...

Spark in local mode is a Python driver, a JVM and forked Python workers; the peak that
matters is their sum. A thread finds the tree with psutil and sums its RSS every 0.2 s
(``/proc/<pid>/statm``, cheap). ``getrusage`` cannot do this: it reports the largest single
process. Σ RSS counts pages that forked workers share once per process, so it is an upper
bound. Σ PSS (shared pages split between their sharers: what the tree really occupies) is
sampled every 5 s only, because reading ``smaps_rollup`` of a multi-GB JVM takes 0.1-0.2 s
of kernel time and stalls the JVM's page faults: polling it as often would slow down what
is measured.

:class:`TreeMemory` and :func:`tree_cpu_seconds` are shared with the benchmark scripts.
Linux only (PSS and the children's CPU times come from Linux's /proc).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from typing import Callable

import psutil

#: What a caller may group the tree's RSS by (e.g. "jvm" / "workers"); None = no grouping.
Role = Callable[[psutil.Process], str]


def process_tree(root: int) -> list[psutil.Process]:
    """``root`` and all its live descendants (empty when ``root`` has exited)."""
    try:
        top = psutil.Process(root)
        return [top, *top.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU seconds of ``root`` and its live descendants, including their
    reaped children (a PySpark daemon's finished workers). Less sensitive than wall time
    to other load on the machine."""
    total = 0.0
    for proc in process_tree(root):
        try:
            t = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


class TreeMemory(threading.Thread):
    """Polls Σ RSS of the process tree under ``root`` every ``interval`` s and Σ PSS every
    ``pss_every`` polls (never when 0); keeps the peaks in bytes (``peak_rss``,
    ``peak_pss``). With ``role``, ``peak_parts`` holds each role's own peak Σ RSS.

    Use as a context manager (``with TreeMemory(pid) as mem: ...``), or ``start()`` and
    ``finish()``; :meth:`sample` takes one reading by hand.
    """

    def __init__(self, root: int, interval: float = 0.2, pss_every: int = 25,
                 role: Role | None = None) -> None:
        super().__init__(daemon=True)
        self.root, self.interval, self.pss_every, self.role = root, interval, pss_every, role
        self._done = threading.Event()
        self._polls = 0
        self.reset()

    def reset(self) -> None:
        """Forget the peaks seen so far (to measure the next phase on its own)."""
        self.peak_rss = self.peak_pss = 0
        self.peak_parts: dict[str, int] = {}

    def sample(self, *, pss: bool = False) -> None:
        """One reading of Σ RSS (and Σ PSS when ``pss``) over the tree; updates the peaks.
        Processes that exit meanwhile count as 0."""
        rss, parts, pss_total = 0, {}, 0
        for proc in process_tree(self.root):
            try:
                mem = proc.memory_full_info() if pss else proc.memory_info()
                key = self.role(proc) if self.role else None
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            rss += mem.rss
            pss_total += getattr(mem, "pss", 0)
            if key is not None:
                parts[key] = parts.get(key, 0) + mem.rss
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_pss = max(self.peak_pss, pss_total)
        for key, value in parts.items():
            self.peak_parts[key] = max(self.peak_parts.get(key, 0), value)

    def run(self) -> None:
        while not self._done.is_set():
            self.sample(pss=self.pss_every > 0 and self._polls % self.pss_every == 0)
            self._polls += 1
            self._done.wait(self.interval)

    def finish(self) -> None:
        """Stop polling and wait for the thread."""
        self._done.set()
        self.join()

    def __enter__(self) -> "TreeMemory":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()


def main(argv: list[str]) -> int:
    if "--" in argv:
        argv = argv[argv.index("--") + 1 :]
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    start = time.perf_counter()
    proc = subprocess.Popen(argv)
    with TreeMemory(proc.pid) as watch:
        code = proc.wait()
    print(
        f"memwatch: exit {code}, wall {time.perf_counter() - start:.1f} s, "
        f"peak tree RSS {watch.peak_rss / 2**30:.2f} GiB (upper bound), "
        f"peak tree PSS {watch.peak_pss / 2**30:.2f} GiB (sampled every "
        f"{watch.interval * watch.pss_every:.0f} s)",
        file=sys.stderr,
    )
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
