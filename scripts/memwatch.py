"""Run a command and report its wall time and the peak memory of its whole process tree.

    python scripts/memwatch.py -- python jobs/ingest.py --set data.dir=...

Spark in local mode is a Python driver, a JVM and forked Python workers; the peak that
matters is their sum. A thread polls Σ RSS over the tree from ``/proc/<pid>/status`` every
0.2 s. ``getrusage`` cannot do this: it reports the largest single process. Σ RSS counts
pages that forked workers share once per process, so it is an upper bound. Σ PSS (shared
pages split between their sharers: what the tree really occupies) is sampled every 5 s
only, because reading ``smaps_rollup`` of a multi-GB JVM takes 0.1-0.2 s of kernel time
and stalls the JVM's page faults: polling it as often would slow down what is measured.

:class:`TreeMemory` and :func:`tree_cpu_seconds` are shared with the benchmark scripts.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

_TICK = os.sysconf("SC_CLK_TCK")


def _stats() -> dict[int, list[str]]:
    """The fields after the command name of ``/proc/<pid>/stat`` for every live process."""
    out: dict[int, list[str]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        out[int(name)] = stat[stat.rindex(")") + 2 :].split()
    return out


def process_tree(root: int, stats: dict[int, list[str]] | None = None) -> list[int]:
    """``root`` and all its live descendants."""
    kids: dict[int, list[int]] = {}
    for pid, fields in (stats or _stats()).items():
        kids.setdefault(int(fields[1]), []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU seconds of ``root`` and its live descendants, including their
    reaped children (a PySpark daemon's finished workers). Less sensitive than wall time
    to other load on the machine."""
    stats = _stats()
    ticks = sum(sum(int(x) for x in stats[p][11:15]) for p in process_tree(root, stats) if p in stats)
    return ticks / _TICK


def _field_kb(path: str, key: str) -> int:
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class TreeMemory(threading.Thread):
    """Polls Σ RSS of a process tree every ``interval`` s and Σ PSS every ``pss_every``
    polls; keeps the peaks (kB in ``peak_rss`` and ``peak_pss``)."""

    def __init__(self, root: int, interval: float = 0.2, pss_every: int = 25) -> None:
        super().__init__(daemon=True)
        self.root, self.interval, self.pss_every = root, interval, pss_every
        self.peak_rss = self.peak_pss = 0
        self.stop = threading.Event()

    def run(self) -> None:
        polls = 0
        while not self.stop.is_set():
            pids = process_tree(self.root)
            self.peak_rss = max(self.peak_rss, sum(_field_kb(f"/proc/{p}/status", "VmRSS:") for p in pids))
            if polls % self.pss_every == 0:
                pss = sum(_field_kb(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids)
                self.peak_pss = max(self.peak_pss, pss)
            polls += 1
            self.stop.wait(self.interval)


def main(argv: list[str]) -> int:
    if "--" in argv:
        argv = argv[argv.index("--") + 1 :]
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    start = time.perf_counter()
    proc = subprocess.Popen(argv)
    watch = TreeMemory(proc.pid)
    watch.start()
    code = proc.wait()
    watch.stop.set()
    watch.join()
    print(
        f"memwatch: exit {code}, wall {time.perf_counter() - start:.1f} s, "
        f"peak tree RSS {watch.peak_rss / 2**20:.2f} GiB (upper bound), "
        f"peak tree PSS {watch.peak_pss / 2**20:.2f} GiB (sampled every "
        f"{watch.interval * watch.pss_every:.0f} s)",
        file=sys.stderr,
    )
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
